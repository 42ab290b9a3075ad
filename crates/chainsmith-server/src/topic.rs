//! MQTT topic-filter matching, for every local cloud's broker delivering to subscriptions.

/// Whether `topic` matches `filter` (MQTT 3.1.1 and 5 §4.7): `+` one level, `#` this level and
/// all below; a filter starting with a wildcard does not match a topic starting with `$`
/// (§4.7.2: `$SYS/…`, `$aws/…`, `$iothub/…` are only matched by filters naming them).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(!filter_matches("a/+/c", "a/b/d"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(!filter_matches("#", "$aws/things/x/shadow/get"));
        assert!(filter_matches(
            "$aws/things/+/shadow/#",
            "$aws/things/x/shadow/get"
        ));
    }
}
