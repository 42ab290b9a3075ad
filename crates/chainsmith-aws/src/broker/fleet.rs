//! The device provisioning MQTT API's topics (fleet provisioning by claim): which request a
//! PUBLISH is, and where its answer goes
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html>). The
//! answer itself is the service's ([`crate::rules::Fleet`]). Only the JSON payload format is
//! served; the CBOR topics (`…/cbor`) are ordinary topics here.
//!
//! "IoT Core Fleet Provisioning returns the device provisioning MQTT API results through the
//! same MQTT connection used to publish the API request" (same page): the reply goes to the
//! requesting connection alone, on `TOPIC/accepted` or `TOPIC/rejected`, when it subscribed
//! there and its policy allows `iot:Receive` on it.

use serde_json::json;

use crate::rules::{FleetRejection, FleetRequest};

const CREATE_FROM_CSR: &str = "$aws/certificates/create-from-csr/json";
const CREATE: &str = "$aws/certificates/create/json";
const TEMPLATES: &str = "$aws/provisioning-templates/";
const PROVISION: &str = "/provision/json";

/// The request a PUBLISH to `topic` makes, if it is one.
pub fn request_of(topic: &str) -> Option<FleetRequest> {
    match topic {
        CREATE_FROM_CSR => Some(FleetRequest::CreateCertificateFromCsr),
        CREATE => Some(FleetRequest::CreateKeysAndCertificate),
        _ => {
            let template = topic.strip_prefix(TEMPLATES)?.strip_suffix(PROVISION)?;
            (!template.is_empty() && !template.contains('/')).then(|| FleetRequest::RegisterThing {
                template: template.to_string(),
            })
        }
    }
}

/// The reply's topic and payload: `REQUEST-TOPIC/accepted` with the service's answer, or
/// `REQUEST-TOPIC/rejected` with `statusCode`, `errorCode` and `errorMessage`.
pub fn reply(
    request_topic: &str,
    answer: Result<serde_json::Value, FleetRejection>,
) -> (String, Vec<u8>) {
    match answer {
        Ok(v) => (
            format!("{request_topic}/accepted"),
            v.to_string().into_bytes(),
        ),
        Err(r) => (
            format!("{request_topic}/rejected"),
            json!({
                "statusCode": r.status_code,
                "errorCode": r.error_code,
                "errorMessage": r.error_message,
            })
            .to_string()
            .into_bytes(),
        ),
    }
}

/// A request body: JSON (an empty payload is `{}`, as `CreateKeysAndCertificate` may be sent).
pub fn body(payload: &[u8]) -> Result<serde_json::Value, FleetRejection> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(payload).map_err(|e| FleetRejection {
        status_code: 400,
        error_code: "InvalidPayload",
        error_message: format!("the request is not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_request_topics_and_no_others() {
        assert_eq!(
            request_of("$aws/certificates/create/json"),
            Some(FleetRequest::CreateKeysAndCertificate)
        );
        assert_eq!(
            request_of("$aws/provisioning-templates/T1/provision/json"),
            Some(FleetRequest::RegisterThing {
                template: "T1".into()
            })
        );
        assert_eq!(
            request_of("$aws/provisioning-templates/T1/provision/json/accepted"),
            None
        );
        assert_eq!(
            request_of("$aws/provisioning-templates//provision/json"),
            None
        );
        assert_eq!(
            request_of("$aws/provisioning-templates/a/b/provision/json"),
            None
        );
        assert_eq!(request_of("$aws/certificates/create/cbor"), None);
    }
}
