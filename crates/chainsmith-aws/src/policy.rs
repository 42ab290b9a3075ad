//! IoT policy documents and their evaluation, as the AWS IoT developer guide documents them.
//!
//! - Documents: <https://docs.aws.amazon.com/iot/latest/developerguide/iot-policies.html>
//!   (`Version`, `Statement` as one object or an array, `Effect`, `Action`/`NotAction`,
//!   `Resource`/`NotResource`, `Condition`).
//! - Decision: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>
//!   as IoT applies it (<https://docs.aws.amazon.com/iot/latest/developerguide/iot-policies.html>:
//!   "an explicit deny overrides any allow"; a request no statement allows is denied).
//! - Actions and their resources:
//!   <https://docs.aws.amazon.com/iot/latest/developerguide/iot-action-resources.html>.
//! - Variables: <https://docs.aws.amazon.com/iot/latest/developerguide/iot-policy-variables.html>
//!   and <https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html>.
//!
//! Wildcards in a resource are IAM's (`*` any run of characters, `/` included; `?` exactly one),
//! never MQTT's: the developer guide's "MQTT wildcard characters in policies"
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/pub-sub-policy.html>) says `+` and `#`
//! in a policy are literal characters.

use serde_json::Value;

use crate::rules::{Action, Admitted};

/// The largest policy document AWS accepts: 2048 characters, white space not counted
/// ("Maximum size of a policy document", AWS IoT Core quotas,
/// <https://docs.aws.amazon.com/general/latest/gr/iot-core.html#security-limits>).
pub const MAX_POLICY_CHARACTERS: usize = 2048;

/// The most policies AWS lets one certificate carry ("Maximum number of policies that can be
/// attached to a certificate or Amazon Cognito identity: 10", AWS IoT Core quotas,
/// <https://docs.aws.amazon.com/general/latest/gr/iot-core.html#security-limits>).
pub const MAX_POLICIES_PER_CERTIFICATE: usize = 10;

/// The most statements read from one document. AWS documents no count of its own: the 2048
/// character quota bounds it (the shortest statement is well over 20 characters), so this is
/// that bound and never refuses a document AWS takes.
pub const MAX_STATEMENTS: usize = MAX_POLICY_CHARACTERS / 20;

/// The region the local service answers for: what a policy's `arn:aws:iot:REGION:…` must match
/// unless it writes `*`. The developer guide's examples use `us-east-1`.
pub const LOCAL_REGION: &str = "us-east-1";

/// The account the local service answers for: the developer guide's example account id.
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// Why a policy document is refused, naming the statement and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Longer than AWS's quota.
    #[error(
        "the policy document has {characters} characters (white space not counted); AWS allows at most {limit}"
    )]
    TooLong {
        /// Non-white-space characters in the document.
        characters: usize,
        /// [`MAX_POLICY_CHARACTERS`].
        limit: usize,
    },
    /// Not JSON, or not a JSON object.
    #[error("the policy document is not a JSON object: {what}")]
    NotJson {
        /// What the parser said.
        what: String,
    },
    /// A `Version` other than the two IAM defines.
    #[error(
        "the policy's Version is {found:?}; AWS accepts \"2012-10-17\" (or the older \"2008-10-17\")"
    )]
    Version {
        /// What the document says.
        found: String,
    },
    /// No `Statement`.
    #[error(
        "the policy has no Statement; write \"Statement\": [{{\"Effect\": …, \"Action\": …, \"Resource\": …}}]"
    )]
    NoStatement,
    /// More statements than [`MAX_STATEMENTS`].
    #[error("the policy has {count} statements; at most {limit} fit in AWS's 2048 characters")]
    TooManyStatements {
        /// How many.
        count: usize,
        /// [`MAX_STATEMENTS`].
        limit: usize,
    },
    /// A field of one statement is wrong.
    #[error("statement {statement}: {field} {problem}")]
    Field {
        /// The statement's position, from 1, or its `Sid`.
        statement: String,
        /// The field (`Effect`, `Action`, …).
        field: &'static str,
        /// What is wrong and what AWS takes.
        problem: String,
    },
}

/// `Allow` or `Deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The statement grants.
    Allow,
    /// The statement refuses, whatever else grants.
    Deny,
}

/// A list of patterns a statement applies to (`Action`, `Resource`), or all but those
/// (`NotAction`, `NotResource`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Patterns {
    /// `Action` / `Resource`: the statement applies to what one pattern matches.
    Only(Vec<String>),
    /// `NotAction` / `NotResource`: the statement applies to what no pattern matches.
    AllBut(Vec<String>),
}

/// A condition operator this module evaluates. AWS IoT's policies use these with the
/// connection's keys (<https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html>
/// uses `Bool` with `iot:Connection.Thing.IsAttached`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionOperator {
    /// `StringEquals`: exact, case-sensitive.
    StringEquals,
    /// `StringNotEquals`.
    StringNotEquals,
    /// `StringLike`: `*` and `?` wildcards.
    StringLike,
    /// `StringNotLike`.
    StringNotLike,
    /// `Bool`: `"true"` or `"false"`.
    Bool,
}

/// One `Condition` test: the operator, the key, and the values any of which may match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The operator.
    pub operator: ConditionOperator,
    /// The key (`iot:Connection.Thing.IsAttached`).
    pub key: String,
    /// The values (IAM: any one matching is enough).
    pub values: Vec<String>,
}

/// One statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// `Sid`, when given.
    pub sid: Option<String>,
    /// `Effect`.
    pub effect: Effect,
    /// `Action` or `NotAction`.
    pub actions: Patterns,
    /// `Resource` or `NotResource`.
    pub resources: Patterns,
    /// `Condition`: every test must hold for the statement to apply.
    pub conditions: Vec<Condition>,
}

/// A parsed IoT policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    /// The statements, in order.
    pub statements: Vec<Statement>,
    /// Whether policy variables are substituted: only under `"Version": "2012-10-17"`. In a
    /// "2008-10-17" document, and in one without a Version (which defaults to it), `${…}` is
    /// literal text ("IAM JSON policy elements: Version",
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_version.html>).
    pub variables: bool,
}

/// The connection a decision is made for: the values AWS substitutes for the policy variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context<'a> {
    /// `${iot:ClientId}`.
    pub client_id: &'a str,
    /// `${iot:Connection.Thing.ThingName}`: the thing attached to the certificate whose name is
    /// the client id, if any; with none the variable has no value and a resource using it
    /// matches nothing.
    pub thing_name: Option<&'a str>,
    /// The region and account of the request's ARN.
    pub region: &'a str,
    /// See `region`.
    pub account: &'a str,
}

impl<'a> Context<'a> {
    /// The context of an admitted connection, in the local region and account.
    pub fn of(who: &'a Admitted) -> Self {
        Context {
            client_id: &who.client_id,
            thing_name: who.thing_name.as_deref(),
            region: LOCAL_REGION,
            account: LOCAL_ACCOUNT,
        }
    }

    /// The value of a policy variable or condition key, or `None` when it has none here.
    fn value(&self, name: &str) -> Option<String> {
        // The variables AWS IoT defines for MQTT connections
        // (https://docs.aws.amazon.com/iot/latest/developerguide/basic-policy-variables.html,
        // https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html);
        // any other has no value in this service, so what uses it matches nothing.
        match name {
            "iot:ClientId" => Some(self.client_id.to_string()),
            "iot:Connection.Thing.ThingName" => self.thing_name.map(str::to_string),
            "iot:Connection.Thing.IsAttached" => Some(self.thing_name.is_some().to_string()),
            _ => None,
        }
    }
}

/// The resource ARN AWS checks for `action` on `resource`
/// (<https://docs.aws.amazon.com/iot/latest/developerguide/iot-action-resources.html>):
/// `client/ID` for Connect, `topic/NAME` for Publish and Receive, `topicfilter/FILTER` for
/// Subscribe.
pub fn resource_arn(action: Action, resource: &str, region: &str, account: &str) -> String {
    let kind = match action {
        Action::Connect => "client",
        Action::Publish | Action::Receive => "topic",
        Action::Subscribe => "topicfilter",
    };
    format!("arn:aws:iot:{region}:{account}:{kind}/{resource}")
}

/// The policy action's name, as a document writes it.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Connect => "iot:Connect",
        Action::Publish => "iot:Publish",
        Action::Subscribe => "iot:Subscribe",
        Action::Receive => "iot:Receive",
    }
}

/// What the policies attached to a certificate decide for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An Allow statement applies and no Deny does.
    Allowed,
    /// A Deny statement applies (whatever allows).
    ExplicitDeny,
    /// No statement allows: the implicit deny.
    NoAllow,
}

impl Decision {
    /// Whether the request may go ahead.
    pub fn allowed(self) -> bool {
        self == Decision::Allowed
    }
}

/// Decide `action` on `resource` for the connection in `context` under every policy attached to
/// its certificate. IAM's evaluation logic, as AWS IoT uses it
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>):
/// an applicable Deny in any policy wins; otherwise one applicable Allow is needed; otherwise
/// the request is denied.
pub fn evaluate<'p>(
    policies: impl IntoIterator<Item = &'p PolicyDocument>,
    context: &Context<'_>,
    action: Action,
    resource: &str,
) -> Decision {
    let arn = resource_arn(action, resource, context.region, context.account);
    let name = action_name(action);
    let mut allowed = false;
    let statements = policies
        .into_iter()
        .flat_map(|p| p.statements.iter().map(|s| (s, p.variables)));
    for (statement, variables) in statements {
        if statement.applies(context, name, &arn, variables) {
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::NoAllow
    }
}

impl Statement {
    fn applies(&self, context: &Context<'_>, action: &str, arn: &str, variables: bool) -> bool {
        // Action names are case-insensitive in IAM; variables are not substituted in actions.
        let action_matches = |p: &String| {
            let pattern = p.to_ascii_lowercase();
            glob(&literal_pattern(&pattern), &action.to_ascii_lowercase())
        };
        let resource_matches = |p: &String| {
            if variables {
                substitute(p, context).is_some_and(|pattern| glob(&pattern, arn))
            } else {
                glob(&literal_pattern(p), arn)
            }
        };
        let action_ok = match &self.actions {
            Patterns::Only(ps) => ps.iter().any(action_matches),
            Patterns::AllBut(ps) => !ps.iter().any(action_matches),
        };
        let resource_ok = match &self.resources {
            Patterns::Only(ps) => ps.iter().any(resource_matches),
            // A NotResource pattern whose variable has no value matches nothing, so it
            // excludes nothing (IAM).
            Patterns::AllBut(ps) => !ps.iter().any(resource_matches),
        };
        action_ok && resource_ok && self.conditions.iter().all(|c| c.holds(context))
    }
}

impl Condition {
    fn holds(&self, context: &Context<'_>) -> bool {
        // IAM: a key with no value makes every operator false but the negated ones, which are
        // true ("…IfExists" is not supported here).
        let Some(value) = context.value(&self.key) else {
            return matches!(
                self.operator,
                ConditionOperator::StringNotEquals | ConditionOperator::StringNotLike
            );
        };
        let like = |p: &String| substitute(p, context).is_some_and(|p| glob(&p, &value));
        match self.operator {
            ConditionOperator::StringEquals => self.values.contains(&value),
            ConditionOperator::StringNotEquals => !self.values.contains(&value),
            ConditionOperator::StringLike => self.values.iter().any(like),
            ConditionOperator::StringNotLike => !self.values.iter().any(like),
            ConditionOperator::Bool => self.values.iter().any(|v| v.eq_ignore_ascii_case(&value)),
        }
    }
}

/// One piece of a pattern after substitution: a substituted value is literal, so a client id
/// holding `*` cannot widen a resource (`topic/${iot:ClientId}` with client id `*` matches only
/// the topic named `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(char),
    Star,
    Question,
}

fn literal_pattern(pattern: &str) -> Vec<Piece> {
    pattern
        .chars()
        .map(|c| match c {
            '*' => Piece::Star,
            '?' => Piece::Question,
            c => Piece::Literal(c),
        })
        .collect()
}

/// Substitute the policy variables in `pattern`; `None` when one has no value, which makes the
/// pattern match nothing, as AWS does
/// (<https://docs.aws.amazon.com/iot/latest/developerguide/iot-policy-variables.html>). IAM's
/// escapes `${*}`, `${?}` and `${$}` stand for the literal character.
fn substitute(pattern: &str, context: &Context<'_>) -> Option<Vec<Piece>> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        out.extend(literal_pattern(&rest[..start]));
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // An unclosed `${` is literal text, as IAM reads it.
            out.extend(rest[start..].chars().map(Piece::Literal));
            return Some(out);
        };
        let name = &after[..end];
        match name {
            "*" | "?" | "$" => out.extend(name.chars().map(Piece::Literal)),
            _ => out.extend(context.value(name)?.chars().map(Piece::Literal)),
        }
        rest = &after[end + 1..];
    }
    out.extend(literal_pattern(rest));
    Some(out)
}

/// IAM's wildcard match of the whole `text`: `*` any run (empty included, `/` included), `?`
/// exactly one character. Linear in practice (the classic greedy matcher with one backtrack
/// point), so a hostile pattern of many stars cannot make it exponential.
fn glob(pattern: &[Piece], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Piece::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Piece::Question) => {
                p += 1;
                t += 1;
            }
            Some(Piece::Literal(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|x| *x == Piece::Star)
}

/// Parse a policy document, holding it to AWS's quota first.
pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
    let characters = text.chars().filter(|c| !c.is_whitespace()).count();
    if characters > MAX_POLICY_CHARACTERS {
        return Err(PolicyError::TooLong {
            characters,
            limit: MAX_POLICY_CHARACTERS,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| PolicyError::NotJson {
        what: e.to_string(),
    })?;
    let Value::Object(doc) = value else {
        return Err(PolicyError::NotJson {
            what: "it is not an object".into(),
        });
    };
    let variables = match doc.get("Version") {
        None => false,
        Some(Value::String(v)) if v == "2012-10-17" => true,
        Some(Value::String(v)) if v == "2008-10-17" => false,
        Some(other) => {
            return Err(PolicyError::Version {
                found: other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string),
            });
        }
    };
    let statements: Vec<&Value> = match doc.get("Statement") {
        None => return Err(PolicyError::NoStatement),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
    };
    if statements.is_empty() {
        return Err(PolicyError::NoStatement);
    }
    if statements.len() > MAX_STATEMENTS {
        return Err(PolicyError::TooManyStatements {
            count: statements.len(),
            limit: MAX_STATEMENTS,
        });
    }
    let statements = statements
        .into_iter()
        .enumerate()
        .map(|(i, s)| parse_statement(i + 1, s))
        .collect::<Result<_, _>>()?;
    Ok(PolicyDocument {
        statements,
        variables,
    })
}

fn parse_statement(position: usize, value: &Value) -> Result<Statement, PolicyError> {
    let sid = value.get("Sid").and_then(Value::as_str).map(str::to_string);
    let name = sid
        .clone()
        .map_or_else(|| position.to_string(), |s| format!("{position} ({s:?})"));
    let err = |field: &'static str, problem: &str| PolicyError::Field {
        statement: name.clone(),
        field,
        problem: problem.to_string(),
    };
    let Value::Object(s) = value else {
        return Err(err("Statement", "is not a JSON object"));
    };
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(_) => return Err(err("Effect", "must be \"Allow\" or \"Deny\"")),
        None => return Err(err("Effect", "is missing; write \"Allow\" or \"Deny\"")),
    };
    let actions = patterns(s, "Action", "NotAction", &err)?;
    let (Patterns::Only(ps) | Patterns::AllBut(ps)) = &actions;
    if let Some(bad) = ps.iter().find(|p| !p.contains(':') && *p != "*") {
        return Err(err(
            "Action",
            &format!("{bad:?} has no service prefix; write iot:Connect, iot:Publish, iot:* …"),
        ));
    }
    let resources = patterns(s, "Resource", "NotResource", &err)?;
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c, &err)?,
    };
    Ok(Statement {
        sid,
        effect,
        actions,
        resources,
        conditions,
    })
}

fn patterns(
    s: &serde_json::Map<String, Value>,
    field: &'static str,
    not_field: &'static str,
    err: &dyn Fn(&'static str, &str) -> PolicyError,
) -> Result<Patterns, PolicyError> {
    let list = |f: &'static str, v: &Value| -> Result<Vec<String>, PolicyError> {
        let list: Vec<String> = match v {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| err(f, "must hold only strings"))?,
            _ => return Err(err(f, "must be a string or an array of strings")),
        };
        if list.is_empty() {
            return Err(err(f, "is empty"));
        }
        Ok(list)
    };
    match (s.get(field), s.get(not_field)) {
        (Some(v), None) => Ok(Patterns::Only(list(field, v)?)),
        (None, Some(v)) => Ok(Patterns::AllBut(list(not_field, v)?)),
        (Some(_), Some(_)) => Err(err(field, &format!("and {not_field} cannot both be given"))),
        (None, None) => Err(err(field, &format!("is missing (or write {not_field})"))),
    }
}

fn parse_conditions(
    c: &Value,
    err: &dyn Fn(&'static str, &str) -> PolicyError,
) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = c else {
        return Err(err("Condition", "must be an object of operators"));
    };
    let mut out = Vec::new();
    for (op, keys) in ops {
        // An operator this service cannot evaluate is refused, never ignored: ignoring it would
        // widen an Allow or drop a Deny.
        let operator = match op.as_str() {
            "StringEquals" => ConditionOperator::StringEquals,
            "StringNotEquals" => ConditionOperator::StringNotEquals,
            "StringLike" => ConditionOperator::StringLike,
            "StringNotLike" => ConditionOperator::StringNotLike,
            "Bool" => ConditionOperator::Bool,
            other => {
                return Err(err(
                    "Condition",
                    &format!(
                        "uses the operator {other:?}, which the local service does not evaluate; it takes StringEquals, StringNotEquals, StringLike, StringNotLike and Bool"
                    ),
                ));
            }
        };
        let Value::Object(keys) = keys else {
            return Err(err("Condition", &format!("{op} must be an object of keys")));
        };
        for (key, values) in keys {
            let values: Vec<String> = match values {
                Value::String(v) => vec![v.clone()],
                Value::Bool(b) => vec![b.to_string()],
                Value::Array(a) => a
                    .iter()
                    .map(|x| match x {
                        Value::String(v) => Some(v.clone()),
                        Value::Bool(b) => Some(b.to_string()),
                        _ => None,
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| err("Condition", &format!("{op}.{key} must hold strings")))?,
                _ => {
                    return Err(err(
                        "Condition",
                        &format!("{op}.{key} must be a string or an array"),
                    ));
                }
            };
            out.push(Condition {
                operator,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(client_id: &'a str, thing: Option<&'a str>) -> Context<'a> {
        Context {
            client_id,
            thing_name: thing,
            region: LOCAL_REGION,
            account: LOCAL_ACCOUNT,
        }
    }

    fn decide(doc: &str, c: &Context<'_>, action: Action, resource: &str) -> Decision {
        let p = parse(doc).expect("parses");
        evaluate([&p], c, action, resource)
    }

    // The developer guide's "Connect policy examples": only the client ids listed may connect.
    const CONNECT_LISTED: &str = r#"{
      "Version": "2012-10-17",
      "Statement": [{
        "Effect": "Allow",
        "Action": ["iot:Connect"],
        "Resource": [
          "arn:aws:iot:us-east-1:123456789012:client/client1",
          "arn:aws:iot:us-east-1:123456789012:client/client2"
        ]
      }]
    }"#;

    #[test]
    fn connect_only_for_listed_client_ids() {
        let c = ctx("client1", None);
        assert_eq!(
            decide(CONNECT_LISTED, &c, Action::Connect, "client1"),
            Decision::Allowed
        );
        let c = ctx("client3", None);
        assert_eq!(
            decide(CONNECT_LISTED, &c, Action::Connect, "client3"),
            Decision::NoAllow
        );
        // Connect does not grant Publish.
        let c = ctx("client1", None);
        assert_eq!(
            decide(CONNECT_LISTED, &c, Action::Publish, "t"),
            Decision::NoAllow
        );
    }

    #[test]
    fn statement_and_lists_may_be_single_values() {
        let doc = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#;
        let c = ctx("any", None);
        for a in [
            Action::Connect,
            Action::Publish,
            Action::Subscribe,
            Action::Receive,
        ] {
            assert_eq!(decide(doc, &c, a, "x"), Decision::Allowed);
        }
    }

    #[test]
    fn region_and_account_may_be_wildcards_but_others_do_not_match() {
        let any = r#"{"Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/d1"}}"#;
        assert_eq!(
            decide(any, &ctx("d1", None), Action::Connect, "d1"),
            Decision::Allowed
        );
        let other = r#"{"Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:eu-west-1:999999999999:client/d1"}}"#;
        assert_eq!(
            decide(other, &ctx("d1", None), Action::Connect, "d1"),
            Decision::NoAllow
        );
    }

    // The guide's Deny-over-Allow example: everything allowed but one topic.
    #[test]
    fn explicit_deny_wins_over_allow_in_any_policy() {
        let allow = parse(r#"{"Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/*"}}"#).unwrap();
        let deny = parse(r#"{"Statement":{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/admin/*"}}"#).unwrap();
        let c = ctx("d", None);
        assert_eq!(
            evaluate([&allow, &deny], &c, Action::Publish, "admin/reset"),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate([&deny, &allow], &c, Action::Publish, "admin/reset"),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate([&allow, &deny], &c, Action::Publish, "data/x"),
            Decision::Allowed
        );
        assert_eq!(
            evaluate([&deny], &c, Action::Publish, "data/x"),
            Decision::NoAllow
        );
        assert_eq!(
            evaluate(std::iter::empty(), &c, Action::Connect, "d"),
            Decision::NoAllow
        );
    }

    // The guide: "MQTT wildcard characters + and # are treated as literal characters".
    #[test]
    fn mqtt_wildcards_in_a_topicfilter_resource_are_literal() {
        let doc = r#"{"Statement":{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/sensors/+/temp"}}"#;
        let c = ctx("d", None);
        assert_eq!(
            decide(doc, &c, Action::Subscribe, "sensors/+/temp"),
            Decision::Allowed
        );
        assert_eq!(
            decide(doc, &c, Action::Subscribe, "sensors/a/temp"),
            Decision::NoAllow
        );
        let hash = r#"{"Statement":{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/a/#"}}"#;
        assert_eq!(
            decide(hash, &c, Action::Subscribe, "a/#"),
            Decision::Allowed
        );
        assert_eq!(
            decide(hash, &c, Action::Subscribe, "a/b"),
            Decision::NoAllow
        );
    }

    #[test]
    fn iam_wildcards_star_spans_slashes_question_is_one_character() {
        let doc = r#"{"Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/a/*/c?"}}"#;
        let c = ctx("d", None);
        assert_eq!(
            decide(doc, &c, Action::Publish, "a/x/y/c1"),
            Decision::Allowed
        );
        assert_eq!(decide(doc, &c, Action::Publish, "a//c1"), Decision::Allowed);
        assert_eq!(decide(doc, &c, Action::Publish, "a/x/c"), Decision::NoAllow);
        assert_eq!(
            decide(doc, &c, Action::Publish, "a/x/c12"),
            Decision::NoAllow
        );
    }

    #[test]
    fn topic_and_topicfilter_are_different_resources() {
        let doc = r#"{"Statement":{"Effect":"Allow","Action":["iot:Publish","iot:Subscribe","iot:Receive"],"Resource":"arn:aws:iot:*:*:topic/t"}}"#;
        let c = ctx("d", None);
        assert_eq!(decide(doc, &c, Action::Publish, "t"), Decision::Allowed);
        assert_eq!(decide(doc, &c, Action::Receive, "t"), Decision::Allowed);
        assert_eq!(decide(doc, &c, Action::Subscribe, "t"), Decision::NoAllow);
    }

    // The guide's policy-variable example: each device its own topics.
    #[test]
    fn client_id_variable_is_substituted_and_its_value_is_literal() {
        let doc = r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"},
          {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/dev/${iot:ClientId}/data"}]}"#;
        let c = ctx("d1", None);
        assert_eq!(decide(doc, &c, Action::Connect, "d1"), Decision::Allowed);
        assert_eq!(
            decide(doc, &c, Action::Publish, "dev/d1/data"),
            Decision::Allowed
        );
        assert_eq!(
            decide(doc, &c, Action::Publish, "dev/d2/data"),
            Decision::NoAllow
        );
        // A client id holding IAM wildcards matches only itself: no widening.
        let c = ctx("*", None);
        assert_eq!(
            decide(doc, &c, Action::Publish, "dev/d2/data"),
            Decision::NoAllow
        );
        assert_eq!(
            decide(doc, &c, Action::Publish, "dev/*/data"),
            Decision::Allowed
        );
        let c = ctx("d?", None);
        assert_eq!(
            decide(doc, &c, Action::Publish, "dev/d2/data"),
            Decision::NoAllow
        );
    }

    // thing-policy-variables: with no thing attached the variable has no value, so the
    // resource matches nothing.
    #[test]
    fn thing_name_variable_without_a_thing_matches_nothing() {
        let doc = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}}"#;
        assert_eq!(
            decide(doc, &ctx("t1", Some("t1")), Action::Connect, "t1"),
            Decision::Allowed
        );
        assert_eq!(
            decide(doc, &ctx("t1", None), Action::Connect, "t1"),
            Decision::NoAllow
        );
        // A Deny on a valueless variable denies nothing either.
        let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"},
           {"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/${iot:Connection.Thing.ThingName}"}]}"#;
        assert_eq!(
            decide(deny, &ctx("t1", None), Action::Publish, "t1"),
            Decision::Allowed
        );
        assert_eq!(
            decide(deny, &ctx("t1", Some("t1")), Action::Publish, "t1"),
            Decision::ExplicitDeny
        );
    }

    // The guide's example: connect only when the thing is attached.
    #[test]
    fn is_attached_condition() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect",
          "Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}",
          "Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}}]}"#;
        assert_eq!(
            decide(doc, &ctx("t1", Some("t1")), Action::Connect, "t1"),
            Decision::Allowed
        );
        assert_eq!(
            decide(doc, &ctx("t1", None), Action::Connect, "t1"),
            Decision::NoAllow
        );
        // As a variable in a resource it reads "true"/"false".
        let v = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/attached/${iot:Connection.Thing.IsAttached}"}}"#;
        assert_eq!(
            decide(v, &ctx("t1", None), Action::Publish, "attached/false"),
            Decision::Allowed
        );
        assert_eq!(
            decide(v, &ctx("t1", None), Action::Publish, "attached/true"),
            Decision::NoAllow
        );
    }

    #[test]
    fn unknown_variable_has_no_value_and_escapes_are_literal() {
        let doc = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":["arn:aws:iot:*:*:topic/${iot:Nope}","arn:aws:iot:*:*:topic/lit${*}"]}}"#;
        let c = ctx("d", None);
        assert_eq!(
            decide(doc, &c, Action::Publish, "anything"),
            Decision::NoAllow
        );
        assert_eq!(decide(doc, &c, Action::Publish, "lit*"), Decision::Allowed);
        assert_eq!(decide(doc, &c, Action::Publish, "litx"), Decision::NoAllow);
    }

    #[test]
    fn not_action_and_not_resource() {
        let doc = r#"{"Statement":[{"Effect":"Allow","NotAction":"iot:Publish","Resource":"*"},
           {"Effect":"Allow","Action":"iot:Publish","NotResource":"arn:aws:iot:*:*:topic/secret"}]}"#;
        let c = ctx("d", None);
        assert_eq!(decide(doc, &c, Action::Subscribe, "x"), Decision::Allowed);
        assert_eq!(decide(doc, &c, Action::Publish, "open"), Decision::Allowed);
        assert_eq!(
            decide(doc, &c, Action::Publish, "secret"),
            Decision::NoAllow
        );
    }

    #[test]
    fn actions_are_case_insensitive_and_take_wildcards() {
        let doc = r#"{"Statement":{"Effect":"Allow","Action":"IOT:pub*","Resource":"*"}}"#;
        let c = ctx("d", None);
        assert_eq!(decide(doc, &c, Action::Publish, "x"), Decision::Allowed);
        assert_eq!(decide(doc, &c, Action::Subscribe, "x"), Decision::NoAllow);
    }

    #[test]
    fn errors_name_the_statement_and_field() {
        let e = parse(r#"{"Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"},{"Sid":"two","Effect":"Permit","Action":"iot:*","Resource":"*"}]}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "statement 2 (\"two\"): Effect must be \"Allow\" or \"Deny\""
        );
        let e = parse(r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("statement 1: Action is missing"),
            "{e}"
        );
        let e = parse(r#"{"Statement":{"Effect":"Allow","Action":"Connect","Resource":"*"}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("no service prefix"), "{e}");
        let e = parse(r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":[1]}}"#)
            .unwrap_err();
        assert!(
            matches!(
                e,
                PolicyError::Field {
                    field: "Resource",
                    ..
                }
            ),
            "{e}"
        );
        let e = parse(r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"1.2.3.4"}}}}"#).unwrap_err();
        assert!(e.to_string().contains("IpAddress"), "{e}");
        assert!(matches!(
            parse(r#"{"Version":"2020-01-01","Statement":[]}"#),
            Err(PolicyError::Version { .. })
        ));
        assert_eq!(parse(r#"{"Statement":[]}"#), Err(PolicyError::NoStatement));
        assert!(matches!(parse("[]"), Err(PolicyError::NotJson { .. })));
    }

    #[test]
    fn document_size_is_held_to_awss_quota_without_white_space() {
        let body = |n: usize| {
            let base = r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"arn:aws:iot:*:*:topic/"}}"#;
            let pad = "a".repeat(n - base.len());
            format!(
                r#"{{"Statement":{{"Effect":"Allow","Action":"iot:*","Resource":"arn:aws:iot:*:*:topic/{pad}"}}}}"#
            )
        };
        let exactly = body(MAX_POLICY_CHARACTERS);
        assert_eq!(exactly.len(), MAX_POLICY_CHARACTERS);
        parse(&exactly).expect("2048 characters are accepted");
        // White space does not count.
        parse(&exactly.replace(',', " ,    ")).expect("white space is free");
        let over = body(MAX_POLICY_CHARACTERS + 1);
        assert_eq!(
            parse(&over),
            Err(PolicyError::TooLong {
                characters: MAX_POLICY_CHARACTERS + 1,
                limit: MAX_POLICY_CHARACTERS
            })
        );
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let pattern = literal_pattern(&"*a".repeat(200));
        let text = "a".repeat(10_000) + "b";
        assert!(!glob(&pattern, &text));
        assert!(glob(&literal_pattern("*"), ""));
        assert!(!glob(&literal_pattern("?"), ""));
    }
}
