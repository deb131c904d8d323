//! The names both binaries take from their flags (namespace, ConfigMap,
//! node, identity), checked as the API server would check them, so that a
//! typo ends the process with a usage error naming the rule rather than in
//! a watch that never finds anything or a request the API server refuses.

/// A namespace name: an RFC 1123 label (at most 63 lowercase letters,
/// digits and `-`, starting and ending with a letter or digit).
pub fn namespace(text: &str) -> Result<String, String> {
    label(text, 63).map_err(|why| format!("{text:?} is not a namespace name: {why}"))
}

/// An object name (ConfigMap, Node): an RFC 1123 subdomain (at most 253
/// characters, dot-separated labels).
pub fn object_name(text: &str) -> Result<String, String> {
    if text.len() > 253 {
        return Err(format!(
            "{text:?} is not an object name: longer than 253 characters"
        ));
    }
    for part in text.split('.') {
        label(part, 63).map_err(|why| format!("{text:?} is not an object name: {why}"))?;
    }
    Ok(text.to_owned())
}

/// A holder identity (a Lease's `holderIdentity`): any text but empty,
/// blank or longer than 253 characters.
pub fn identity(text: &str) -> Result<String, String> {
    if text.trim().is_empty() || text.chars().any(char::is_whitespace) {
        return Err(format!("{text:?} is not an identity: empty or with spaces"));
    }
    if text.len() > 253 {
        return Err(format!(
            "{text:?} is not an identity: longer than 253 characters"
        ));
    }
    Ok(text.to_owned())
}

fn label(text: &str, max: usize) -> Result<String, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.len() > max {
        return Err(format!("longer than {max} characters"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{c:?} is not allowed (lowercase letters, digits and '-' only)"
        ));
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err("it must start and end with a letter or digit".into());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_api_server_takes_are_taken() {
        assert_eq!(namespace("ferrolb-system"), Ok("ferrolb-system".into()));
        assert_eq!(object_name("ferrolb-config"), Ok("ferrolb-config".into()));
        assert_eq!(
            object_name("ip-10-0-0-1.eu-west-1.compute.internal"),
            Ok("ip-10-0-0-1.eu-west-1.compute.internal".into())
        );
        assert_eq!(object_name(&"a".repeat(63)), Ok("a".repeat(63)));
    }

    #[test]
    fn names_the_api_server_refuses_are_refused_with_the_rule() {
        assert_eq!(
            namespace(""),
            Err("\"\" is not a namespace name: it is empty".into())
        );
        assert_eq!(
            namespace("ferrolb.system"),
            Err(
                "\"ferrolb.system\" is not a namespace name: '.' is not allowed (lowercase letters, digits and '-' only)"
                    .into()
            )
        );
        assert_eq!(
            object_name("Config"),
            Err(
                "\"Config\" is not an object name: 'C' is not allowed (lowercase letters, digits and '-' only)"
                    .into()
            )
        );
        assert_eq!(
            object_name("-x"),
            Err(
                "\"-x\" is not an object name: it must start and end with a letter or digit".into()
            )
        );
        assert_eq!(
            object_name("a..b"),
            Err("\"a..b\" is not an object name: it is empty".into())
        );
        assert!(namespace(&"a".repeat(64)).is_err());
        assert!(object_name(&"a.".repeat(127)).is_err());
    }
}
