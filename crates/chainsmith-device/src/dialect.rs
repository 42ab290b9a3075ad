//! What a device says differs by cloud: the MQTT username, the round trips a message can take
//! and the topics those are answered on. A [`Dialect`] is one cloud's answers; [`Flavor`]
//! picks it (`--flavor`, or from the target). The connection test and the fleet ask the
//! dialect and never match on the flavor: AWS IoT Core is one more implementation
//! ([`AwsIotCore`]) and one more variant.

use crate::azure;
use crate::mqtt::{Flavor, RoundTripKind};

/// One cloud's device conventions.
pub(crate) trait Dialect: Sync {
    /// The name `--flavor` takes and reports carry.
    fn name(&self) -> &'static str;
    /// The CONNECT username for `device_id` at hub `host`, if the cloud wants one.
    fn username(&self, host: &str, device_id: &str) -> Option<String>;
    /// The round trips a message takes, of those the test allows (`twin`: the device twin,
    /// `c2d_echo`: the local hub's cloud-to-device echo).
    fn round_trips(&self, twin: bool, c2d_echo: bool) -> Vec<RoundTripKind>;
    /// The topic filter a round trip of `kind` is answered on.
    fn subscription(&self, device_id: &str, kind: RoundTripKind) -> String;
    /// Whether the cloud keeps a device twin.
    fn has_twin(&self) -> bool;
    /// The topic telemetry goes to (`alert`: the seed's `temperatureAlert` property, which
    /// Azure carries in the topic's property bag).
    fn telemetry_topic(&self, device_id: &str, alert: bool) -> String {
        azure_telemetry_topic(device_id, alert)
    }
    /// Whether `topic` is `device_id`'s own telemetry coming back (the echo round trip).
    fn is_own_telemetry(&self, device_id: &str, topic: &str) -> bool {
        azure::parse_telemetry_topic(topic).is_ok_and(|(dev, _)| dev == device_id)
    }
}

/// IoT Hub's telemetry topic with the seed's properties.
fn azure_telemetry_topic(device_id: &str, alert: bool) -> String {
    let props = azure::Properties::new()
        .with("temperatureAlert", if alert { "true" } else { "false" })
        .with(azure::sys::CONTENT_TYPE, "application/json")
        .with(azure::sys::CONTENT_ENCODING, "utf-8");
    azure::telemetry_topic(device_id, &props)
}

/// AWS IoT Core: the client id is the thing name (the device id), no username (the SDKs send
/// only their own `?SDK=…` metrics), no twin and no cloud echo: the device subscribes to its
/// own telemetry topic, which AWS delivers back to it ("a device may subscribe to its own
/// topic"). The topic is `device/{clientId}/telemetry`, under the
/// `topic/device/${iot:ClientId}/*` a device policy allows in the developer guide's examples
/// ("Publish/Subscribe policy examples",
/// <https://docs.aws.amazon.com/iot/latest/developerguide/pub-sub-policy.html>) and in
/// chainsmith's AWS tutorial; nothing under Azure's `devices/…/messages/…`.
pub(crate) struct AwsIotCore;

/// Azure IoT Hub: username `{host}/{id}/?api-version=…`, round trips through the device twin
/// and the local hub's C2D echo.
pub(crate) struct AzureIotHub;

/// Any MQTT broker: no username, the device subscribes to its own telemetry topic.
pub(crate) struct AnyBroker;

impl Dialect for AzureIotHub {
    fn name(&self) -> &'static str {
        "azure"
    }
    fn username(&self, host: &str, device_id: &str) -> Option<String> {
        Some(azure::username(host, device_id))
    }
    fn round_trips(&self, twin: bool, c2d_echo: bool) -> Vec<RoundTripKind> {
        [(twin, RoundTripKind::Twin), (c2d_echo, RoundTripKind::C2d)]
            .into_iter()
            .filter_map(|(on, k)| on.then_some(k))
            .collect()
    }
    fn subscription(&self, device_id: &str, kind: RoundTripKind) -> String {
        match kind {
            RoundTripKind::Twin => azure::TWIN_RESPONSE_FILTER.to_string(),
            RoundTripKind::C2d => azure::c2d_filter(device_id),
            // Not one of IoT Hub's round trips; a device may not subscribe to telemetry there.
            RoundTripKind::Echo => echo_filter(device_id),
        }
    }
    fn has_twin(&self) -> bool {
        true
    }
}

impl Dialect for AnyBroker {
    fn name(&self) -> &'static str {
        "generic"
    }
    fn username(&self, _host: &str, _device_id: &str) -> Option<String> {
        None
    }
    fn round_trips(&self, _twin: bool, _c2d_echo: bool) -> Vec<RoundTripKind> {
        vec![RoundTripKind::Echo]
    }
    fn subscription(&self, device_id: &str, _kind: RoundTripKind) -> String {
        echo_filter(device_id)
    }
    fn has_twin(&self) -> bool {
        false
    }
}

impl Dialect for AwsIotCore {
    fn name(&self) -> &'static str {
        "aws"
    }
    fn username(&self, _host: &str, _device_id: &str) -> Option<String> {
        None
    }
    fn round_trips(&self, _twin: bool, _c2d_echo: bool) -> Vec<RoundTripKind> {
        vec![RoundTripKind::Echo]
    }
    fn subscription(&self, device_id: &str, _kind: RoundTripKind) -> String {
        aws_telemetry_topic(device_id)
    }
    fn has_twin(&self) -> bool {
        false
    }
    fn telemetry_topic(&self, device_id: &str, _alert: bool) -> String {
        aws_telemetry_topic(device_id)
    }
    fn is_own_telemetry(&self, device_id: &str, topic: &str) -> bool {
        topic == aws_telemetry_topic(device_id)
    }
}

/// `device/{clientId}/telemetry`: see [`AwsIotCore`].
pub fn aws_telemetry_topic(device_id: &str) -> String {
    format!("device/{device_id}/telemetry")
}

/// The device's own telemetry, which a plain broker echoes back to a subscriber.
fn echo_filter(device_id: &str) -> String {
    format!("devices/{device_id}/messages/events/#")
}

impl Flavor {
    /// This flavor's conventions.
    pub(crate) fn dialect(self) -> &'static dyn Dialect {
        match self {
            Flavor::Azure => &AzureIotHub,
            Flavor::Generic => &AnyBroker,
            Flavor::Aws => &AwsIotCore,
        }
    }

    /// The name `--flavor` takes and reports carry (`azure`, `aws`, `generic`).
    pub fn as_str(self) -> &'static str {
        self.dialect().name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flavor_names_its_round_trips_and_their_topics() {
        let azure = Flavor::Azure.dialect();
        assert_eq!(
            azure.round_trips(true, true),
            [RoundTripKind::Twin, RoundTripKind::C2d]
        );
        assert_eq!(azure.round_trips(false, true), [RoundTripKind::C2d]);
        assert_eq!(
            azure.subscription("d1", RoundTripKind::Twin),
            "$iothub/twin/res/#"
        );
        assert_eq!(
            azure.subscription("d1", RoundTripKind::C2d),
            "devices/d1/messages/devicebound/#"
        );
        assert!(
            azure
                .username("h", "d1")
                .is_some_and(|u| u.starts_with("h/d1/"))
        );
        let broker = Flavor::Generic.dialect();
        assert_eq!(broker.round_trips(true, true), [RoundTripKind::Echo]);
        assert_eq!(
            broker.subscription("d1", RoundTripKind::Echo),
            "devices/d1/messages/events/#"
        );
        assert_eq!(broker.username("h", "d1"), None);
        let aws = Flavor::Aws.dialect();
        assert_eq!(aws.round_trips(true, true), [RoundTripKind::Echo]);
        assert_eq!(
            aws.subscription("d1", RoundTripKind::Echo),
            "device/d1/telemetry"
        );
        assert_eq!(aws.telemetry_topic("d1", true), "device/d1/telemetry");
        assert!(aws.is_own_telemetry("d1", "device/d1/telemetry"));
        assert!(!aws.is_own_telemetry("d1", "device/d2/telemetry"));
        assert_eq!(aws.username("h", "d1"), None);
        assert!(!aws.has_twin());
        for f in [Flavor::Azure, Flavor::Aws, Flavor::Generic] {
            assert_eq!(f.as_str().parse::<Flavor>(), Ok(f));
        }
    }
}
