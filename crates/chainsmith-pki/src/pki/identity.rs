//! Identity rules: which device ids, registration ids and verification codes each target
//! accepts (from DOMAIN.md), id ranges like `dev-{001..500}`, and workspace entity names.

use super::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Whose rules a device id must follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Azure IoT Hub device ids.
    #[default]
    Hub,
    /// Azure Device Provisioning Service registration ids.
    Dps,
    /// Azure IoT Central device ids.
    Central,
    /// Any MQTT broker: only the CN limits apply.
    Generic,
}

impl Target {
    /// Every target, in the order menus list them.
    pub const ALL: [Target; 4] = [Target::Hub, Target::Dps, Target::Central, Target::Generic];

    /// The name the CLI and spec files use.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Hub => "hub",
            Target::Dps => "dps",
            Target::Central => "central",
            Target::Generic => "generic",
        }
    }

    fn allowed_description(self) -> &'static str {
        match self {
            Target::Hub => "letters, digits and - . + % _ # * ? ! ( ) , = @ $ '",
            Target::Dps => "letters, digits and - . _ : (ending in a letter, digit or -)",
            Target::Central => "letters, digits and -",
            Target::Generic => "printable ASCII characters",
        }
    }

    fn rule_name(self) -> &'static str {
        match self {
            Target::Hub => "Azure IoT Hub allows",
            Target::Dps => "DPS registration ids allow",
            Target::Central => "IoT Central allows",
            Target::Generic => "a certificate CN allows",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hub" | "iothub" | "iot-hub" => Ok(Target::Hub),
            "dps" => Ok(Target::Dps),
            "central" | "iot-central" => Ok(Target::Central),
            "generic" | "mqtt" => Ok(Target::Generic),
            _ => Err(Error::UnknownChoice(format!(
                "unknown target \"{s}\"; choose one of: hub, dps, central, generic"
            ))),
        }
    }
}

/// The longest CN RFC 5280 allows, and so the longest X.509 device id.
pub(crate) const MAX_CN: usize = 64;

fn char_name(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        '/' => "a slash '/'".into(),
        c if c.is_control() => format!("control character U+{:04X}", c as u32),
        c if !c.is_ascii() => format!("the non-ASCII character '{c}'"),
        c => format!("'{c}'"),
    }
}

/// Check a device id against a target's rules. `Ok` carries warnings (accepted, but a
/// person should know); `Err` names the offending character and lists the allowed ones.
pub fn check_device_id(id: &str, target: Target) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let bad = |c: char, pos: usize| {
        Error::DeviceId(format!(
            "device id \"{id}\" has {} at position {}; {} {}",
            char_name(c),
            pos + 1,
            target.rule_name(),
            target.allowed_description()
        ))
    };
    if id.is_empty() {
        return Err(Error::DeviceId(
            "device id is empty; give the id the device connects with".into(),
        ));
    }
    let len = id.chars().count();
    if len > MAX_CN {
        let extra = if target == Target::Hub {
            " (IoT Hub allows 128 characters, but an X.509 device's id must fit in its certificate's CN)"
        } else {
            ""
        };
        return Err(Error::DeviceId(format!(
            "device id \"{id}\" is {len} characters long; a certificate CN holds at most {MAX_CN}{extra}"
        )));
    }
    for (pos, c) in id.chars().enumerate() {
        let ok = match target {
            Target::Hub => {
                c.is_ascii_alphanumeric()
                    || "-.+%_#*?!(),=@$'".contains(c)
                    || {
                        if c == ':' || c == ';' {
                            warnings.push(format!(
                            "device id \"{id}\" contains '{c}': some Microsoft pages allow it, others do not; prefer letters, digits, - and ."
                        ));
                            true
                        } else {
                            false
                        }
                    }
            }
            Target::Dps => c.is_ascii_alphanumeric() || "-._:".contains(c),
            Target::Central => c.is_ascii_alphanumeric() || c == '-',
            Target::Generic => c.is_ascii_graphic() || c == ' ',
        };
        if !ok {
            return Err(bad(c, pos));
        }
    }
    match target {
        Target::Hub => {
            if let Some(c) = id.chars().find(|c| *c == '+' || *c == '#') {
                warnings.push(format!(
                    "device id \"{id}\" contains '{c}': IoT Hub accepts it but the Azure device SDKs do not (it is an MQTT wildcard)"
                ));
            }
        }
        Target::Dps => {
            let last = id.chars().last().unwrap_or('-');
            if !(last.is_ascii_alphanumeric() || last == '-') {
                return Err(Error::DeviceId(format!(
                    "registration id \"{id}\" ends with '{last}'; DPS needs the last character to be a letter, digit or -"
                )));
            }
            if id.chars().any(|c| c.is_ascii_uppercase()) {
                warnings.push(format!(
                    "registration id \"{id}\" has upper-case letters: DPS compares registration ids case-insensitively"
                ));
            }
        }
        Target::Central | Target::Generic => {}
    }
    Ok(warnings)
}

/// A hub's verification code must fit a CN: 1–64 printable characters.
pub fn check_verification_code(code: &str) -> Result<()> {
    if code.is_empty() {
        return Err(Error::VerificationCode(
            "verification code is empty; copy the code the hub shows for the CA (Azure's are 48 hex characters)".into(),
        ));
    }
    if code.chars().count() > MAX_CN {
        return Err(Error::VerificationCode(format!(
            "verification code \"{code}\" is {} characters long; a code must fit a certificate CN (at most {MAX_CN}); check that you copied only the code",
            code.chars().count()
        )));
    }
    if let Some((pos, c)) = code
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
    {
        return Err(Error::VerificationCode(format!(
            "verification code \"{code}\" has {} at position {}; codes are printable characters only (Azure's are 48 hex characters)",
            char_name(c),
            pos + 1
        )));
    }
    Ok(())
}

/// IoT Hub and DPS show 48 hex characters today. Another shape is accepted (other services
/// use other codes) but worth a second look: a code copied in part is the usual mistake.
pub fn verification_code_warning(code: &str) -> Option<String> {
    let hex48 = code.len() == 48 && code.bytes().all(|b| b.is_ascii_hexdigit());
    (!hex48).then(|| {
        format!(
            "verification code \"{code}\" is not 48 hex characters, the shape IoT Hub and DPS show; check that you copied the whole code (made anyway: other services use other shapes)"
        )
    })
}

/// Names of workspace entities are directory names: anything a device id may be, but no
/// path separators, no leading dot, nothing empty.
pub fn check_entity_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.starts_with('.') {
        Some("starts with '.'".to_string())
    } else if name.len() > 128 {
        Some(format!("is {} bytes long (at most 128)", name.len()))
    } else {
        name.chars()
            .find(|c| *c == '/' || *c == '\\' || c.is_control())
            .map(|c| format!("contains {}", char_name(c)))
    };
    match problem {
        Some(p) => Err(Error::EntityName(format!(
            "name \"{name}\" {p}; names are file names in the workspace: use letters, digits and - . _"
        ))),
        None => Ok(()),
    }
}

/// Expand `prefix{A..B}suffix` into every id in the range; other ids pass through.
/// The numbers keep the width of the first bound when it has leading zeros: `{001..500}`.
pub fn expand_range(pattern: &str) -> Result<Vec<String>> {
    let Some(open) = pattern.find('{') else {
        return Ok(vec![pattern.to_string()]);
    };
    let bad = |why: &str| {
        Error::DeviceId(format!(
            "id range \"{pattern}\" {why}; write it like dev-{{001..500}} (inclusive, ascending)"
        ))
    };
    let close = pattern[open..]
        .find('}')
        .map(|i| i + open)
        .ok_or_else(|| bad("has no closing '}'"))?;
    let (prefix, inner, suffix) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    if suffix.contains('{') {
        return Err(bad("has more than one range"));
    }
    let (a, b) = inner
        .split_once("..")
        .ok_or_else(|| bad("needs '..' between the bounds"))?;
    let parse = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| bad(&format!("has a bound \"{s}\" that is not a number")))
    };
    let (lo, hi) = (parse(a)?, parse(b)?);
    if lo > hi {
        return Err(bad("counts downwards"));
    }
    if hi - lo >= 1_000_000 {
        return Err(bad("has more than 1,000,000 ids"));
    }
    let width = if a.len() > 1 && a.starts_with('0') {
        a.len()
    } else {
        0
    };
    Ok((lo..=hi)
        .map(|n| format!("{prefix}{n:0width$}{suffix}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_rules_name_the_bad_character() {
        let err = check_device_id("dev 01", Target::Hub)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a space at position 4"), "{err}");
        assert!(err.contains("letters, digits and -"), "{err}");
        assert!(
            check_device_id("dev-01.a_b(c)!$'", Target::Hub)
                .unwrap()
                .is_empty()
        );
        assert_eq!(check_device_id("dev#1", Target::Hub).unwrap().len(), 1);
        assert_eq!(check_device_id("dev:1", Target::Hub).unwrap().len(), 1);
        assert!(
            check_device_id(&"a".repeat(65), Target::Hub)
                .unwrap_err()
                .to_string()
                .contains("at most 64")
        );
    }

    #[test]
    fn dps_and_central_rules() {
        assert!(check_device_id("reg.1:a", Target::Dps).is_ok());
        assert!(
            check_device_id("reg.", Target::Dps)
                .unwrap_err()
                .to_string()
                .contains("ends with '.'")
        );
        assert!(check_device_id("reg!", Target::Dps).is_err());
        assert!(check_device_id("a-b", Target::Central).is_ok());
        assert!(
            check_device_id("a.b", Target::Central)
                .unwrap_err()
                .to_string()
                .contains("'.'")
        );
    }

    #[test]
    fn codes() {
        assert!(
            check_verification_code("75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3").is_ok()
        );
        assert!(check_verification_code("").is_err());
        assert!(check_verification_code("a b").is_err());
        assert!(check_verification_code(&"A".repeat(65)).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(
            expand_range("dev-{001..003}").unwrap(),
            ["dev-001", "dev-002", "dev-003"]
        );
        assert_eq!(expand_range("s{9..11}x").unwrap(), ["s9x", "s10x", "s11x"]);
        assert_eq!(expand_range("plain").unwrap(), ["plain"]);
        assert!(expand_range("d{3..1}").is_err());
        assert!(expand_range("d{a..b}").is_err());
        assert!(expand_range("d{1..2").is_err());
    }

    #[test]
    fn entity_names() {
        assert!(check_entity_name("root-ca").is_ok());
        assert!(check_entity_name("../x").is_err());
        assert!(check_entity_name("a/b").is_err());
        assert!(check_entity_name("").is_err());
    }
}
