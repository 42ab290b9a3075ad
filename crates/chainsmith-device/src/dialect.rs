//! What a device says differs by cloud: the MQTT username, the round trips a message can take
//! and the topics those are answered on. A [`Dialect`] is one cloud's answers; [`Flavor`]
//! picks it (`--flavor`, or from the target). The connection test and the fleet ask the
//! dialect and never match on the flavor, so the next cloud (AWS IoT Core) is one more
//! implementation and one more variant.

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
}

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
        }
    }

    /// The name `--flavor` takes and reports carry (`azure`, `generic`).
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
        for f in [Flavor::Azure, Flavor::Generic] {
            assert_eq!(f.as_str().parse::<Flavor>(), Ok(f));
        }
    }
}
