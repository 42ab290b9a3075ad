//! Identity rules: which device ids, registration ids and verification codes each target
//! accepts (from DOMAIN.md), id ranges like `dev-{001..500}`, and workspace entity names.

use super::{
    DeviceIdError, EntityNameProblem, Error, RangeProblem, Result, UnknownChoice,
    VerificationCodeError,
};
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

    /// The names of [`Target::ALL`], in that order.
    pub const NAMES: [&'static str; 4] = {
        let mut names = [""; 4];
        let mut i = 0;
        while i < names.len() {
            names[i] = Target::ALL[i].as_str();
            i += 1;
        }
        names
    };

    /// The name the CLI and spec files use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Target::Hub => "hub",
            Target::Dps => "dps",
            Target::Central => "central",
            Target::Generic => "generic",
        }
    }

    pub(crate) fn allowed_description(self) -> &'static str {
        match self {
            Target::Hub => "letters, digits and - . + % _ # * ? ! ( ) , = @ $ '",
            Target::Dps => "letters, digits and - . _ : (ending in a letter, digit or -)",
            Target::Central => "letters, digits and -",
            Target::Generic => "printable ASCII characters",
        }
    }

    pub(crate) fn rule_name(self) -> &'static str {
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
            _ => Err(UnknownChoice::Target {
                given: s.to_string(),
                choices: &Target::NAMES,
            }
            .into()),
        }
    }
}

/// The longest CN RFC 5280 allows, and so the longest X.509 device id.
pub(crate) const MAX_CN: usize = 64;

pub(crate) fn char_name(c: char) -> String {
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
    let bad = |c: char, pos: usize| DeviceIdError::Character {
        id: id.to_string(),
        found: c,
        position: pos + 1,
        target,
    };
    if id.is_empty() {
        return Err(DeviceIdError::Empty.into());
    }
    let len = id.chars().count();
    if len > MAX_CN {
        return Err(DeviceIdError::TooLong {
            id: id.to_string(),
            len,
            max: MAX_CN,
            target,
        }
        .into());
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
            return Err(bad(c, pos).into());
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
                return Err(DeviceIdError::DpsLastCharacter {
                    id: id.to_string(),
                    last,
                }
                .into());
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
        return Err(VerificationCodeError::Empty.into());
    }
    let len = code.chars().count();
    if len > MAX_CN {
        return Err(VerificationCodeError::TooLong {
            code: code.to_string(),
            len,
            max: MAX_CN,
        }
        .into());
    }
    if let Some((pos, c)) = code
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
    {
        return Err(VerificationCodeError::Character {
            code: code.to_string(),
            found: c,
            position: pos + 1,
        }
        .into());
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

/// The longest entity name, in bytes: a directory name well inside every file system's
/// 255-byte limit, with room for the files chainsmith writes beside it.
pub(crate) const MAX_ENTITY_NAME: usize = 128;

/// The most ids one range may expand to.
pub(crate) const MAX_RANGE_IDS: u64 = 1_000_000;

/// Names of workspace entities are directory names: anything a device id may be, but no
/// path separators, no leading dot, nothing empty.
pub fn check_entity_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some(EntityNameProblem::Empty)
    } else if name.starts_with('.') {
        Some(EntityNameProblem::LeadingDot)
    } else if name.len() > MAX_ENTITY_NAME {
        Some(EntityNameProblem::TooLong {
            len: name.len(),
            max: MAX_ENTITY_NAME,
        })
    } else {
        name.chars()
            .find(|c| *c == '/' || *c == '\\' || c.is_control())
            .map(EntityNameProblem::Character)
    };
    match problem {
        Some(problem) => Err(Error::EntityName {
            name: name.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Expand `prefix{A..B}suffix` into every id in the range; other ids pass through.
/// The numbers keep the width of the first bound when it has leading zeros: `{001..500}`.
pub fn expand_range(pattern: &str) -> Result<Vec<String>> {
    let Some(open) = pattern.find('{') else {
        return Ok(vec![pattern.to_string()]);
    };
    let bad = |problem: RangeProblem| -> Error {
        DeviceIdError::Range {
            pattern: pattern.to_string(),
            problem,
        }
        .into()
    };
    let close = pattern[open..]
        .find('}')
        .map(|i| i + open)
        .ok_or_else(|| bad(RangeProblem::NoClosingBrace))?;
    let (prefix, inner, suffix) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    if suffix.contains('{') {
        return Err(bad(RangeProblem::SeveralRanges));
    }
    let (a, b) = inner
        .split_once("..")
        .ok_or_else(|| bad(RangeProblem::NoDots))?;
    let parse = |s: &str| {
        s.parse::<u64>().map_err(|_| {
            bad(RangeProblem::NotANumber {
                bound: s.to_string(),
            })
        })
    };
    let (lo, hi) = (parse(a)?, parse(b)?);
    if lo > hi {
        return Err(bad(RangeProblem::Downwards));
    }
    if hi - lo >= MAX_RANGE_IDS {
        return Err(bad(RangeProblem::TooMany));
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
