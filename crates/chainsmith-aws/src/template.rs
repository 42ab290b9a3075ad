//! Provisioning templates, as JITP and fleet provisioning use them
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/provision-template.html>).
//!
//! A template is parsed once ([`Template::parse`]) and rendered with parameter values
//! ([`Template::render`]), a pure function. A parameter's value is data: it is never parsed
//! as template, so a certificate whose CN is `{"Ref":"X"}` or `${ThingName}` yields that text,
//! not what it spells. Where a value lands inside a policy document (built with `Fn::Join` or
//! `Fn::Sub`), it is written as a JSON string's content with IAM's escapes for `$`, `*` and
//! `?`, so it can neither close the string nor become a policy variable or wildcard.

use std::collections::BTreeMap;

use serde_json::Value;

/// The largest template body AWS accepts ("Maximum size of a provisioning template: 10 KB",
/// AWS IoT Core quotas, <https://docs.aws.amazon.com/general/latest/gr/iot-core.html>).
pub const MAX_TEMPLATE_BYTES: usize = 10 * 1024;

/// The longest thing name AWS accepts (CreateThing's `thingName`: 1 to 128 characters,
/// `[a-zA-Z0-9:_-]+`, <https://docs.aws.amazon.com/iot/latest/apireference/API_CreateThing.html>).
pub const MAX_THING_NAME: usize = 128;

/// The most attributes a thing carries in the registry (AWS IoT Core quotas: "Maximum number
/// of attributes for a thing with a thing type: 50", without one 3; we take the larger).
pub const MAX_THING_ATTRIBUTES: usize = 50;

/// The longest attribute value (CreateThing's `AttributePayload`: values up to 800
/// characters).
pub const MAX_ATTRIBUTE_VALUE: usize = 800;

/// The most parameters a render takes: a template is at most 10 KB, so it cannot declare more
/// than this many (each declaration is over 20 bytes); the bound never refuses one AWS takes.
pub const MAX_PARAMETERS: usize = MAX_TEMPLATE_BYTES / 20;

/// The parameters AWS fills from the device certificate for JITP
/// (<https://docs.aws.amazon.com/iot/latest/developerguide/jit-provisioning.html>).
pub const JITP_CERTIFICATE_PARAMETERS: [&str; 8] = [
    "AWS::IoT::Certificate::Country",
    "AWS::IoT::Certificate::Organization",
    "AWS::IoT::Certificate::OrganizationalUnit",
    "AWS::IoT::Certificate::DistinguishedNameQualifier",
    "AWS::IoT::Certificate::StateName",
    "AWS::IoT::Certificate::CommonName",
    "AWS::IoT::Certificate::SerialNumber",
    "AWS::IoT::Certificate::Id",
];

/// Why a template is refused, or cannot be rendered with these values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// Larger than AWS's quota.
    #[error("the template body is {bytes} bytes; AWS allows at most {limit}")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// [`MAX_TEMPLATE_BYTES`].
        limit: usize,
    },
    /// Not a JSON object.
    #[error("the template is not a JSON object: {what}")]
    NotJson {
        /// What the parser said.
        what: String,
    },
    /// A field is wrong.
    #[error("{at}: {problem}")]
    Invalid {
        /// Where (`Resources.thing.Properties.ThingName`).
        at: String,
        /// What is wrong and what AWS takes.
        problem: String,
    },
    /// A `Ref` or `${}` names no declared parameter.
    #[error(
        "{at} refers to {name:?}, which Parameters does not declare; declare it or fix the name"
    )]
    UndeclaredParameter {
        /// Where.
        at: String,
        /// The name.
        name: String,
    },
    /// A declared parameter with no default was not given.
    #[error("the parameter {name:?} has no value and no Default; pass it")]
    MissingParameter {
        /// The name.
        name: String,
    },
    /// The rendered thing name is not one AWS accepts.
    #[error("the thing name {name:?} is not valid: AWS takes 1 to 128 of a-z A-Z 0-9 : _ -")]
    InvalidThingName {
        /// The rendered name.
        name: String,
    },
    /// Too many parameter values were passed.
    #[error("{count} parameters were passed; a template takes at most {limit}")]
    TooManyParameters {
        /// How many.
        count: usize,
        /// [`MAX_PARAMETERS`].
        limit: usize,
    },
}

/// A value as written in the template: literal text, a parameter, or an intrinsic over them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Text(String),
    Ref(String),
    Join(String, Vec<Expr>),
    /// `Fn::Sub`'s string form, already split: literal text and parameter names.
    Sub(Vec<Expr>),
}

/// The certificate a template names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CertificateSource {
    Id(Expr),
    Pem(Expr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PolicySource {
    Name(Expr),
    Document(Expr),
}

/// A parsed provisioning template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// Declared parameters and their defaults.
    parameters: BTreeMap<String, Option<String>>,
    thing: Option<(Expr, Vec<(String, Expr)>)>,
    certificate: Option<(CertificateSource, Option<Expr>)>,
    policies: Vec<PolicySource>,
    device_configuration: Vec<(String, Expr)>,
    notes: Vec<String>,
}

/// The thing a rendered template creates or updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThingSpec {
    /// Its name, checked against AWS's rule.
    pub name: String,
    /// `AttributePayload`.
    pub attributes: BTreeMap<String, String>,
}

/// How the rendered template names the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateSpec {
    /// `CertificateId`: a certificate the service already holds (JITP's
    /// `AWS::IoT::Certificate::Id`, fleet provisioning's new certificate).
    Id(String),
    /// `CertificatePem`.
    Pem(String),
}

/// The policy a rendered template attaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySpec {
    /// `PolicyName`: an existing policy.
    Named(String),
    /// `PolicyDocument`: the text of a new policy (parsed by the registry).
    Document(String),
}

/// What a template renders to: what to provision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provision {
    /// The thing, if the template has an `AWS::IoT::Thing`.
    pub thing: Option<ThingSpec>,
    /// The certificate and the status to give it (`Status`, default ACTIVE as AWS's).
    pub certificate: Option<(CertificateSpec, String)>,
    /// Policies to attach to the certificate.
    pub policies: Vec<PolicySpec>,
    /// `DeviceConfiguration`, returned to a fleet-provisioning device.
    pub device_configuration: BTreeMap<String, String>,
    /// What the template asked for that the local service does not do (`ThingGroups`).
    pub notes: Vec<String>,
}

fn invalid(at: &str, problem: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        at: at.to_string(),
        problem: problem.into(),
    }
}

impl Template {
    /// Parse a template body, holding it to AWS's quota; every `Ref` must name a declared
    /// parameter (AWS refuses the template otherwise).
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLarge {
                bytes: text.len(),
                limit: MAX_TEMPLATE_BYTES,
            });
        }
        let value: Value = serde_json::from_str(text).map_err(|e| TemplateError::NotJson {
            what: e.to_string(),
        })?;
        let Value::Object(doc) = value else {
            return Err(TemplateError::NotJson {
                what: "it is not an object".into(),
            });
        };
        let mut t = Template {
            parameters: BTreeMap::new(),
            thing: None,
            certificate: None,
            policies: Vec::new(),
            device_configuration: Vec::new(),
            notes: Vec::new(),
        };
        if let Some(params) = doc.get("Parameters") {
            let Value::Object(params) = params else {
                return Err(invalid("Parameters", "must be an object"));
            };
            for (name, decl) in params {
                let at = format!("Parameters.{name}");
                match decl.get("Type").and_then(Value::as_str) {
                    Some("String") => {}
                    Some(other) => {
                        return Err(invalid(
                            &at,
                            format!("has Type {other:?}; AWS's templates take \"String\""),
                        ));
                    }
                    None => return Err(invalid(&at, "has no Type; write \"Type\": \"String\"")),
                }
                let default = match decl.get("Default") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(invalid(&at, "Default must be a string")),
                };
                t.parameters.insert(name.clone(), default);
            }
        }
        let Some(Value::Object(resources)) = doc.get("Resources") else {
            return Err(invalid("Resources", "is missing or not an object"));
        };
        for (logical, resource) in resources {
            t.parse_resource(logical, resource)?;
        }
        if let Some(config) = doc.get("DeviceConfiguration") {
            let Value::Object(config) = config else {
                return Err(invalid("DeviceConfiguration", "must be an object"));
            };
            for (k, v) in config {
                let e = t.expr(&format!("DeviceConfiguration.{k}"), v)?;
                t.device_configuration.push((k.clone(), e));
            }
        }
        Ok(t)
    }

    fn parse_resource(&mut self, logical: &str, resource: &Value) -> Result<(), TemplateError> {
        let at = format!("Resources.{logical}");
        let kind = resource.get("Type").and_then(Value::as_str);
        let props = match resource.get("Properties") {
            Some(Value::Object(p)) => p.clone(),
            None => serde_json::Map::new(),
            Some(_) => return Err(invalid(&at, "Properties must be an object")),
        };
        let prop = |name: &str| {
            props
                .get(name)
                .map(|v| (format!("{at}.Properties.{name}"), v))
        };
        match kind {
            Some("AWS::IoT::Thing") => {
                if self.thing.is_some() {
                    return Err(invalid(
                        &at,
                        "is a second AWS::IoT::Thing; a template provisions one",
                    ));
                }
                let Some((name_at, name)) = prop("ThingName") else {
                    return Err(invalid(&at, "has no Properties.ThingName"));
                };
                let name = self.expr(&name_at, name)?;
                let mut attributes = Vec::new();
                if let Some((pat, payload)) = prop("AttributePayload") {
                    let Value::Object(payload) = payload else {
                        return Err(invalid(&pat, "must be an object"));
                    };
                    if payload.len() > MAX_THING_ATTRIBUTES {
                        return Err(invalid(
                            &pat,
                            format!(
                                "has {} attributes; AWS allows {MAX_THING_ATTRIBUTES}",
                                payload.len()
                            ),
                        ));
                    }
                    for (k, v) in payload {
                        attributes.push((k.clone(), self.expr(&format!("{pat}.{k}"), v)?));
                    }
                }
                if props.contains_key("ThingGroups") || props.contains_key("ThingTypeName") {
                    self.notes.push(format!(
                        "{at}: ThingGroups and ThingTypeName are not modelled by the local service and were ignored"
                    ));
                }
                self.thing = Some((name, attributes));
            }
            Some("AWS::IoT::Certificate") => {
                if self.certificate.is_some() {
                    return Err(invalid(
                        &at,
                        "is a second AWS::IoT::Certificate; a template names one",
                    ));
                }
                let source = match (prop("CertificateId"), prop("CertificatePem")) {
                    (Some((a, v)), None) => CertificateSource::Id(self.expr(&a, v)?),
                    (None, Some((a, v))) => CertificateSource::Pem(self.expr(&a, v)?),
                    _ => {
                        return Err(invalid(
                            &at,
                            "needs exactly one of CertificateId and CertificatePem",
                        ));
                    }
                };
                let status = match prop("Status") {
                    Some((a, v)) => Some(self.expr(&a, v)?),
                    None => None,
                };
                self.certificate = Some((source, status));
            }
            Some("AWS::IoT::Policy") => {
                let source = match (prop("PolicyName"), prop("PolicyDocument")) {
                    (Some((a, v)), None) => PolicySource::Name(self.expr(&a, v)?),
                    (None, Some((a, Value::Object(_)))) | (None, Some((a, Value::Array(_))))
                        if !is_intrinsic(props.get("PolicyDocument")) =>
                    {
                        // A document written as JSON rather than as a string: its text, taken
                        // as the template's own (no parameters inside).
                        let _ = a;
                        PolicySource::Document(Expr::Text(props["PolicyDocument"].to_string()))
                    }
                    (None, Some((a, v))) => PolicySource::Document(self.expr(&a, v)?),
                    _ => {
                        return Err(invalid(
                            &at,
                            "needs exactly one of PolicyName and PolicyDocument",
                        ));
                    }
                };
                self.policies.push(source);
            }
            Some(other) => {
                return Err(invalid(
                    &at,
                    format!(
                        "has Type {other:?}; a provisioning template takes AWS::IoT::Thing, AWS::IoT::Certificate and AWS::IoT::Policy"
                    ),
                ));
            }
            None => return Err(invalid(&at, "has no Type")),
        }
        Ok(())
    }

    /// Read a value of the template into an expression, checking every parameter it names.
    fn expr(&self, at: &str, v: &Value) -> Result<Expr, TemplateError> {
        match v {
            Value::String(s) => Ok(Expr::Text(s.clone())),
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().expect("one entry");
                match (k.as_str(), arg) {
                    ("Ref", Value::String(name)) => {
                        self.declared(at, name)?;
                        Ok(Expr::Ref(name.clone()))
                    }
                    ("Fn::Join", Value::Array(a)) if a.len() == 2 => {
                        let (Value::String(delim), Value::Array(items)) = (&a[0], &a[1]) else {
                            return Err(invalid(at, "Fn::Join takes [\"delimiter\", [values…]]"));
                        };
                        let items = items
                            .iter()
                            .enumerate()
                            .map(|(i, x)| self.expr(&format!("{at}.Fn::Join[{i}]"), x))
                            .collect::<Result<_, _>>()?;
                        Ok(Expr::Join(delim.clone(), items))
                    }
                    ("Fn::Sub", Value::String(s)) => Ok(Expr::Sub(self.split_sub(at, s)?)),
                    _ => Err(invalid(
                        at,
                        format!(
                            "uses {k:?}; the local service renders Ref, Fn::Join and Fn::Sub (string form)"
                        ),
                    )),
                }
            }
            Value::Bool(b) => Ok(Expr::Text(b.to_string())),
            Value::Number(n) => Ok(Expr::Text(n.to_string())),
            _ => Err(invalid(at, "must be a string, Ref, Fn::Join or Fn::Sub")),
        }
    }

    fn declared(&self, at: &str, name: &str) -> Result<(), TemplateError> {
        if self.parameters.contains_key(name) {
            Ok(())
        } else {
            Err(TemplateError::UndeclaredParameter {
                at: at.to_string(),
                name: name.to_string(),
            })
        }
    }

    /// `Fn::Sub`'s `${Name}` references (and `${!Literal}`, CloudFormation's escape).
    fn split_sub(&self, at: &str, s: &str) -> Result<Vec<Expr>, TemplateError> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push(Expr::Text(rest[..start].to_string()));
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push(Expr::Text(rest[start..].to_string()));
                rest = "";
                break;
            };
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push(Expr::Text(format!("${{{literal}}}")));
            } else {
                self.declared(at, name)?;
                out.push(Expr::Ref(name.to_string()));
            }
            rest = &after[end + 1..];
        }
        out.push(Expr::Text(rest.to_string()));
        Ok(out)
    }

    /// The parameters the template declares.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.parameters.keys().map(String::as_str)
    }

    /// Render with these parameter values (a value not declared is ignored, as AWS ignores
    /// extra `RegisterThing` parameters). Pure: nothing is created here.
    pub fn render(&self, params: &BTreeMap<String, String>) -> Result<Provision, TemplateError> {
        if params.len() > MAX_PARAMETERS {
            return Err(TemplateError::TooManyParameters {
                count: params.len(),
                limit: MAX_PARAMETERS,
            });
        }
        let mut values = BTreeMap::new();
        for (name, default) in &self.parameters {
            if let Some(v) = params.get(name).or(default.as_ref()) {
                values.insert(name.as_str(), v.as_str());
            }
        }
        let plain = |e: &Expr| -> Result<String, TemplateError> {
            Ok(pieces(e, &values)?.into_iter().map(|(s, _)| s).collect())
        };
        let thing = match &self.thing {
            None => None,
            Some((name, attributes)) => {
                let name = plain(name)?;
                if name.is_empty()
                    || name.chars().count() > MAX_THING_NAME
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
                {
                    return Err(TemplateError::InvalidThingName { name });
                }
                let mut attrs = BTreeMap::new();
                for (k, v) in attributes {
                    let v = plain(v)?;
                    if v.chars().count() > MAX_ATTRIBUTE_VALUE {
                        return Err(invalid(
                            &format!("AttributePayload.{k}"),
                            format!(
                                "renders to {} characters; AWS allows {MAX_ATTRIBUTE_VALUE}",
                                v.chars().count()
                            ),
                        ));
                    }
                    attrs.insert(k.clone(), v);
                }
                Some(ThingSpec {
                    name,
                    attributes: attrs,
                })
            }
        };
        let certificate = match &self.certificate {
            None => None,
            Some((source, status)) => {
                let spec = match source {
                    CertificateSource::Id(e) => CertificateSpec::Id(plain(e)?),
                    CertificateSource::Pem(e) => CertificateSpec::Pem(plain(e)?),
                };
                let status = match status {
                    Some(e) => plain(e)?,
                    None => "ACTIVE".to_string(),
                };
                if !matches!(status.as_str(), "ACTIVE" | "INACTIVE") {
                    return Err(invalid(
                        "AWS::IoT::Certificate.Status",
                        format!("renders to {status:?}; a template sets ACTIVE or INACTIVE"),
                    ));
                }
                Some((spec, status))
            }
        };
        let mut policies = Vec::new();
        for p in &self.policies {
            policies.push(match p {
                PolicySource::Name(e) => PolicySpec::Named(plain(e)?),
                PolicySource::Document(e) => PolicySpec::Document(
                    pieces(e, &values)?
                        .into_iter()
                        .map(|(s, origin)| match origin {
                            Origin::Template => s,
                            Origin::Parameter => escape_for_policy(&s),
                        })
                        .collect(),
                ),
            });
        }
        let mut device_configuration = BTreeMap::new();
        for (k, e) in &self.device_configuration {
            device_configuration.insert(k.clone(), plain(e)?);
        }
        Ok(Provision {
            thing,
            certificate,
            policies,
            device_configuration,
            notes: self.notes.clone(),
        })
    }
}

fn is_intrinsic(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Object(m)) if m.len() == 1 && m.keys().all(|k| k == "Ref" || k.starts_with("Fn::")))
}

/// Where a piece of rendered text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Template,
    Parameter,
}

fn pieces(e: &Expr, values: &BTreeMap<&str, &str>) -> Result<Vec<(String, Origin)>, TemplateError> {
    Ok(match e {
        Expr::Text(s) => vec![(s.clone(), Origin::Template)],
        Expr::Ref(name) => match values.get(name.as_str()) {
            Some(v) => vec![(v.to_string(), Origin::Parameter)],
            None => return Err(TemplateError::MissingParameter { name: name.clone() }),
        },
        Expr::Join(delim, items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push((delim.clone(), Origin::Template));
                }
                out.extend(pieces(item, values)?);
            }
            out
        }
        Expr::Sub(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(pieces(item, values)?);
            }
            out
        }
    })
}

/// A parameter's value as it may stand inside a policy document's JSON string: JSON's escapes
/// (so it cannot end the string), then IAM's `${$}`, `${*}`, `${?}` (so it cannot become a
/// variable or a wildcard).
fn escape_for_policy(value: &str) -> String {
    let json = serde_json::to_string(value).expect("a string serialises");
    let inner = &json[1..json.len() - 1];
    let mut out = String::with_capacity(inner.len());
    for c in inner.chars() {
        match c {
            '$' => out.push_str("${$}"),
            '*' => out.push_str("${*}"),
            '?' => out.push_str("${?}"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;
    use crate::rules::Action;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // The JITP page's example template, shortened.
    const JITP: &str = r#"{
      "Parameters": {
        "AWS::IoT::Certificate::CommonName": {"Type": "String"},
        "AWS::IoT::Certificate::SerialNumber": {"Type": "String"},
        "AWS::IoT::Certificate::Country": {"Type": "String", "Default": "WA"},
        "AWS::IoT::Certificate::Id": {"Type": "String"}
      },
      "Resources": {
        "thing": {
          "Type": "AWS::IoT::Thing",
          "Properties": {
            "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
            "AttributePayload": {"version": "v1", "serialNumber": {"Ref": "AWS::IoT::Certificate::SerialNumber"}},
            "ThingGroups": ["v1-lightbulbs"]
          }
        },
        "certificate": {
          "Type": "AWS::IoT::Certificate",
          "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}
        },
        "policy": {
          "Type": "AWS::IoT::Policy",
          "Properties": {
            "PolicyDocument": {"Fn::Join": ["", ["{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:Publish\",\"Resource\":\"arn:aws:iot:*:*:topic/foo/", {"Ref": "AWS::IoT::Certificate::CommonName"}, "\"}]}"]]}
          }
        }
      }
    }"#;

    #[test]
    fn the_jitp_example_renders() {
        let t = Template::parse(JITP).unwrap();
        let p = t
            .render(&params(&[
                ("AWS::IoT::Certificate::CommonName", "bulb-1"),
                ("AWS::IoT::Certificate::SerialNumber", "0A1B"),
                ("AWS::IoT::Certificate::Id", "abc123"),
            ]))
            .unwrap();
        let thing = p.thing.unwrap();
        assert_eq!(thing.name, "bulb-1");
        assert_eq!(thing.attributes["serialNumber"], "0A1B");
        assert_eq!(thing.attributes["version"], "v1");
        assert_eq!(
            p.certificate,
            Some((CertificateSpec::Id("abc123".into()), "ACTIVE".into()))
        );
        assert_eq!(p.notes.len(), 1, "ThingGroups is noted as ignored");
        let [PolicySpec::Document(doc)] = p.policies.as_slice() else {
            panic!("one document")
        };
        let doc = policy::parse(doc).unwrap();
        let c = policy::Context {
            client_id: "x",
            thing_name: None,
            region: "r",
            account: "a",
        };
        assert!(policy::evaluate([&doc], &c, Action::Publish, "foo/bulb-1").allowed());
    }

    #[test]
    fn a_certificate_field_is_data_never_template() {
        let t = Template::parse(JITP).unwrap();
        // A CN that spells a Ref is not a valid thing name, and is refused as such: it was
        // not read as a Ref.
        let hostile = r#"{"Ref":"AWS::IoT::Certificate::Id"}"#;
        let e = t
            .render(&params(&[
                ("AWS::IoT::Certificate::CommonName", hostile),
                ("AWS::IoT::Certificate::SerialNumber", "1"),
                ("AWS::IoT::Certificate::Id", "abc"),
            ]))
            .unwrap_err();
        assert_eq!(
            e,
            TemplateError::InvalidThingName {
                name: hostile.into()
            }
        );
        // In an attribute it stays the very text.
        let p = t
            .render(&params(&[
                ("AWS::IoT::Certificate::CommonName", "ok"),
                (
                    "AWS::IoT::Certificate::SerialNumber",
                    "${AWS::IoT::Certificate::Id}",
                ),
                ("AWS::IoT::Certificate::Id", "abc"),
            ]))
            .unwrap();
        assert_eq!(
            p.thing.unwrap().attributes["serialNumber"],
            "${AWS::IoT::Certificate::Id}"
        );
    }

    #[test]
    fn a_value_in_a_policy_document_cannot_widen_it() {
        let t = Template::parse(
            r#"{"Parameters":{"Name":{"Type":"String"}},"Resources":{"p":{"Type":"AWS::IoT::Policy","Properties":{
              "PolicyDocument":{"Fn::Sub":"{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"arn:aws:iot:*:*:client/${Name}\"}}"}}}}}"#,
        )
        .unwrap();
        let c = |id| policy::Context {
            client_id: id,
            thing_name: None,
            region: "r",
            account: "a",
        };
        for (hostile, other) in [
            ("${iot:ClientId}", "anyone"),
            ("*", "anyone"),
            ("d?", "d2"),
            (
                r#"x\"},{\"Effect\":\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*"#,
                "anyone",
            ),
            (
                r#"x"},{"Effect":"Allow","Action":"iot:*","Resource":"*"#,
                "anyone",
            ),
        ] {
            let p = t.render(&params(&[("Name", hostile)])).unwrap();
            let [PolicySpec::Document(doc)] = p.policies.as_slice() else {
                panic!()
            };
            let doc = policy::parse(doc).unwrap_or_else(|e| panic!("{hostile}: {e}: {doc}"));
            assert_eq!(doc.statements.len(), 1, "{hostile}");
            assert!(
                !policy::evaluate([&doc], &c(other), Action::Connect, other).allowed(),
                "{hostile}"
            );
            assert!(
                policy::evaluate([&doc], &c(hostile), Action::Connect, hostile).allowed(),
                "{hostile}"
            );
        }
    }

    #[test]
    fn policy_by_name_defaults_and_missing_parameters() {
        let t = Template::parse(
            r#"{"Parameters":{"SerialNumber":{"Type":"String"},"Prefix":{"Type":"String","Default":"dev"}},
              "Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Fn::Join":["-",[{"Ref":"Prefix"},{"Ref":"SerialNumber"}]]}}},
                "policy":{"Type":"AWS::IoT::Policy","Properties":{"PolicyName":"FleetPolicy"}}},
              "DeviceConfiguration":{"Serial":{"Ref":"SerialNumber"}}}"#,
        )
        .unwrap();
        let p = t.render(&params(&[("SerialNumber", "42")])).unwrap();
        assert_eq!(p.thing.unwrap().name, "dev-42");
        assert_eq!(p.policies, vec![PolicySpec::Named("FleetPolicy".into())]);
        assert_eq!(p.device_configuration["Serial"], "42");
        assert_eq!(
            t.render(&BTreeMap::new()),
            Err(TemplateError::MissingParameter {
                name: "SerialNumber".into()
            })
        );
    }

    #[test]
    fn refusals_name_the_place() {
        let e = Template::parse(r#"{"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Ref":"Nope"}}}}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Resources.t.Properties.ThingName refers to \"Nope\", which Parameters does not declare; declare it or fix the name"
        );
        let e = Template::parse(r#"{"Resources":{"x":{"Type":"AWS::S3::Bucket"}}}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Resources.x: has Type \"AWS::S3::Bucket\""),
            "{e}"
        );
        let e = Template::parse(r#"{"Resources":{"t":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Fn::If":[]}}}}}"#).unwrap_err();
        assert!(e.to_string().contains("Fn::If"), "{e}");
        let e = Template::parse(r#"{"Parameters":{"N":{"Type":"Number"}},"Resources":{}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("Number"), "{e}");
        assert!(matches!(
            Template::parse("{}"),
            Err(TemplateError::Invalid { .. })
        ));
    }

    #[test]
    fn size_is_held_to_awss_quota() {
        let base = r#"{"Resources":{},"DeviceConfiguration":{"k":""}}"#;
        let fits = base.replace(
            "\"\"",
            &format!("\"{}\"", "a".repeat(MAX_TEMPLATE_BYTES - base.len())),
        );
        assert_eq!(fits.len(), MAX_TEMPLATE_BYTES);
        Template::parse(&fits).unwrap();
        let over = fits.replace("\"k\"", "\"kk\"");
        assert_eq!(
            Template::parse(&over),
            Err(TemplateError::TooLarge {
                bytes: MAX_TEMPLATE_BYTES + 1,
                limit: MAX_TEMPLATE_BYTES
            })
        );
    }
}
