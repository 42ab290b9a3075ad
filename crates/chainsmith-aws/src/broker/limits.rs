//! AWS IoT Core's message-broker limits and topic rules, as the local broker holds devices to
//! them. The figures are AWS's quotas: "AWS IoT Core endpoints and quotas", section "Message
//! broker and protocol limits and quotas"
//! (<https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits>).

/// "Client ID size: 128 bytes of UTF-8 encoded characters" (hard limit).
pub const MAX_CLIENT_ID_BYTES: usize = 128;
/// "Topic size: The topic passed to the message broker when publishing a message cannot
/// exceed 256 bytes of UTF-8 encoded characters" (hard limit; topic filters too).
pub const MAX_TOPIC_BYTES: usize = 256;
/// "Maximum number of slashes in topic and topic filter: A topic in a publish or subscribe
/// request can have no more than 7 forward slashes (/)", i.e. 8 levels. AWS's reserved
/// topics (`$aws/...`, shadows with named shadows reach 9 levels) are not held to it.
pub const MAX_TOPIC_SLASHES: usize = 7;
/// "Message size: The payload for every publish request can be no larger than 128 KB. AWS IoT
/// Core rejects publish and connect requests larger than this size."
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
/// The largest MQTT packet read: the payload quota plus a topic and MQTT 5 properties.
pub const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + 8 * 1024;
/// A CONNECT is read before the device is authenticated: at most this much (a client id,
/// username, password and will are far below it).
pub const MAX_CONNECT_BYTES: usize = 16 * 1024;
/// "Maximum subscriptions per subscribe request: 8" (hard limit): a SUBSCRIBE with more is
/// refused as a whole.
pub const MAX_FILTERS_PER_SUBSCRIBE: usize = 8;
/// "Subscriptions per connection: 50" (AWS's default quota): a SUBSCRIBE beyond it gets
/// failure codes for the filters that do not fit.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 50;
/// "Maximum inbound unacknowledged messages" / "in-flight unacknowledged messages: 100" per
/// client: what a connection's queue of messages to deliver holds; past it, messages to that
/// connection are dropped (it is not reading).
pub const MAX_OUTBOX: usize = 100;
/// QoS 1 messages sent to one connection and not yet acknowledged (PUBACK): AWS's figure for
/// unacknowledged messages per client ("In-flight unacknowledged messages: 100"). Past it,
/// further messages wait in the connection's queue ([`MAX_OUTBOX`]) until a PUBACK frees a
/// slot.
pub const MAX_INFLIGHT_TO_DEVICE: usize = 100;
/// How long a QoS 1 message to an MQTT 3.1.1 device waits for its PUBACK before it is sent
/// again with DUP set. AWS documents that it resends unacknowledged QoS 1 messages ("Sent at
/// least one time, and then repeatedly until a PUBACK response is received") but not the
/// interval; this is the local service's. MQTT 5 forbids resending within a connection
/// (MQTT 5.0 §4.4), so MQTT 5 devices get each message once per connection.
pub const QOS1_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Sends of one QoS 1 message (the first and the retries) before it is given up on, so a
/// device that never acknowledges does not hold its window for ever (local figure: AWS
/// documents none).
pub const MAX_QOS1_SENDS: u32 = 5;
/// "Inbound publish requests per second per connection: 100" (hard limit). Past it, AWS IoT
/// Core throttles: the connection stays up and the excess is discarded (QoS 0 lost; QoS 1
/// not acknowledged, so the device's SDK sends it again or times out). MQTT 5 devices get a
/// PUBACK with 0x97 quota exceeded.
pub const MAX_PUBLISHES_PER_SECOND: u32 = 100;
/// "Retained messages per account: 500,000" is AWS's; the local broker keeps far fewer, and
/// refuses to retain beyond this (the message is still delivered).
pub const MAX_RETAINED: usize = 10_000;
/// "Maximum retained message size" is the payload limit: 128 KB.
pub const MAX_RETAINED_BYTES: usize = MAX_PAYLOAD_BYTES;
/// The payloads of all retained messages together (local figure: AWS bills retained
/// messages per account and documents no total). [`MAX_RETAINED`] messages of
/// [`MAX_RETAINED_BYTES`] are 1.3 GB of memory, which devices within AWS's quotas could fill;
/// past this budget a new topic is not retained (the message is still delivered).
pub const MAX_RETAINED_TOTAL_BYTES: usize = 64 * 1024 * 1024;
/// "Keep-alive period: the default keep-alive is 1200 seconds", the most AWS accepts; a
/// client asking for more (or 0, none) is held to it.
pub const MAX_KEEP_ALIVE_SECS: u16 = 1200;
/// How often a connected device's certificate is checked to be still ACTIVE (AWS disconnects
/// "within a few minutes" of a status change; the local service within this).
pub const ADMISSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);
/// Connected sessions (after CONNACK) one peer address may hold; a fleet from one machine
/// holds at most a few hundred.
pub const MAX_SESSIONS_PER_PEER: usize = 4096;
/// Connected sessions across all peers: four peers' worth.
pub const MAX_SESSIONS: usize = 4 * MAX_SESSIONS_PER_PEER;

/// Why a topic name or filter is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty.
    #[error("the topic is empty")]
    Empty,
    /// Over [`MAX_TOPIC_BYTES`].
    #[error("the topic is {0} bytes; AWS IoT Core allows at most {MAX_TOPIC_BYTES}")]
    TooLong(usize),
    /// Over [`MAX_TOPIC_SLASHES`].
    #[error(
        "the topic has {0} slashes; AWS IoT Core allows at most {MAX_TOPIC_SLASHES} outside $aws/ topics"
    )]
    TooDeep(usize),
    /// A wildcard in a topic name (MQTT 3.1.1 §3.3.2.1, MQTT 5 §3.3.2.1).
    #[error("a topic name holds a wildcard (+ or #), which MQTT forbids")]
    WildcardInName,
    /// A wildcard not alone in its level, or `#` not last (MQTT §4.7.1).
    #[error("a wildcard (+ or #) must fill its level, and # must be the last level")]
    BadWildcard,
    /// U+0000 (MQTT §1.5.3).
    #[error("the topic holds U+0000, which MQTT forbids")]
    Nul,
}

fn common(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong(topic.len()));
    }
    if topic.contains('\0') {
        return Err(TopicError::Nul);
    }
    let slashes = topic.matches('/').count();
    if slashes > MAX_TOPIC_SLASHES && !topic.starts_with("$aws/") {
        return Err(TopicError::TooDeep(slashes));
    }
    Ok(())
}

/// Whether devices may not publish on `topic` because AWS's services alone publish there.
/// AWS's "Reserved topics" page
/// (<https://docs.aws.amazon.com/iot/latest/developerguide/reserved-topics.html>) lists, for
/// each `$aws/` topic, the operations a device may do: the answers of the Device Shadow,
/// fleet provisioning and jobs services (`…/accepted`, `…/rejected`, `…/update/delta`,
/// `…/update/documents`, `…/jobs/notify[-next]`) and the lifecycle events under
/// `$aws/events/` are Subscribe only. A device publishing there would pass for the service
/// (a forged `update/delta` is acted on as the shadow's).
pub fn service_only_topic(topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix("$aws/") else {
        return false;
    };
    if rest.starts_with("events/") {
        return true;
    }
    let last = rest.rsplit('/').next().unwrap_or_default();
    matches!(last, "accepted" | "rejected" | "notify" | "notify-next")
        || (last == "delta" || last == "documents") && rest.contains("/shadow/")
}

/// A topic name a device may publish to.
pub fn check_topic_name(topic: &str) -> Result<(), TopicError> {
    common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// A topic filter a device may subscribe to.
pub fn check_topic_filter(filter: &str) -> Result<(), TopicError> {
    common(filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        if wild && level.len() != 1 {
            return Err(TopicError::BadWildcard);
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(TopicError::BadWildcard);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_held_to_aws_quotas() {
        assert_eq!(
            check_topic_name(&"a".repeat(257)),
            Err(TopicError::TooLong(257))
        );
        assert_eq!(
            check_topic_name("1/2/3/4/5/6/7/8/9"),
            Err(TopicError::TooDeep(8))
        );
        assert!(check_topic_name("1/2/3/4/5/6/7/8").is_ok());
        assert!(check_topic_name("$aws/things/t/shadow/name/n/update/accepted").is_ok());
        assert_eq!(check_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(check_topic_filter("a/b#"), Err(TopicError::BadWildcard));
        assert_eq!(check_topic_filter("#/a"), Err(TopicError::BadWildcard));
        assert!(check_topic_filter("a/+/#").is_ok());
    }

    #[test]
    fn the_services_reply_and_event_topics_are_theirs_alone() {
        for t in [
            "$aws/things/t/shadow/update/accepted",
            "$aws/things/t/shadow/update/delta",
            "$aws/things/t/shadow/update/documents",
            "$aws/things/t/shadow/name/n/get/rejected",
            "$aws/events/presence/connected/t",
            "$aws/certificates/create/json/accepted",
            "$aws/provisioning-templates/p/provision/json/rejected",
            "$aws/things/t/jobs/notify-next",
        ] {
            assert!(service_only_topic(t), "{t}");
        }
        for t in [
            "$aws/things/t/shadow/update",
            "$aws/things/t/shadow/name/n/get",
            "$aws/certificates/create/json",
            "dev/t/accepted",
            "dev/t/shadow/delta",
        ] {
            assert!(!service_only_topic(t), "{t}");
        }
    }
}
