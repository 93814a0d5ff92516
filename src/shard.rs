//! Which connectors a shard serves: a Kubernetes label selector on AwsConnectors, given as
//! `--shard-selector`. The API server filters the connector watch by it; the operator matches
//! it too, to tell whether a connector named by a grant is served here, so both must read it
//! the same way: this parser takes exactly the set-based syntax `kubectl -l` takes
//! (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas).

use std::collections::BTreeMap;

use kube::core::{Expression, Selector, SelectorExt};

/// A parsed `--shard-selector`, with its text as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSelector {
    text: String,
    selector: Selector,
}

/// What is wrong with a selector, naming the requirement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--shard-selector: {0}")]
pub struct BadSelector(String);

impl ShardSelector {
    pub fn parse(text: &str) -> Result<Self, BadSelector> {
        let mut expressions = Vec::new();
        for requirement in split_requirements(text)? {
            expressions.push(parse_requirement(&requirement)?);
        }
        if expressions.is_empty() {
            return Err(BadSelector(
                "is empty; it would select every connector (leave it unset for that)".into(),
            ));
        }
        Ok(Self {
            text: text.trim().to_string(),
            selector: expressions.into_iter().collect(),
        })
    }

    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Whether a connector with these labels is in the shard.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }
}

impl std::fmt::Display for ShardSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits at the commas that are not inside a value list.
fn split_requirements(text: &str) -> Result<Vec<String>, BadSelector> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0u32;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| BadSelector(format!("unbalanced ')' in {text:?}")))?;
            }
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if depth != 0 {
        return Err(BadSelector(format!("unclosed '(' in {text:?}")));
    }
    parts.push(current);
    let parts: Vec<String> = parts.into_iter().map(|p| p.trim().to_string()).collect();
    if parts.len() > 1 && parts.iter().any(String::is_empty) {
        return Err(BadSelector(format!("an empty requirement in {text:?}")));
    }
    Ok(parts.into_iter().filter(|p| !p.is_empty()).collect())
}

fn parse_requirement(requirement: &str) -> Result<Expression, BadSelector> {
    let bad = |why: &str| BadSelector(format!("{requirement:?}: {why}"));
    if let Some(key) = requirement.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(label_key(
            key.trim(),
            requirement,
        )?));
    }
    for (operator, equal) in [("!=", false), ("==", true), ("=", true)] {
        if let Some((key, value)) = requirement.split_once(operator) {
            let key = label_key(key.trim(), requirement)?;
            let value = label_value(value.trim(), requirement)?;
            return Ok(if equal {
                Expression::Equal(key, value)
            } else {
                Expression::NotEqual(key, value)
            });
        }
    }
    let mut words = requirement.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Expression::Exists(label_key(key, requirement)?));
    };
    let (is_in, list) = if let Some(list) = rest.strip_prefix("notin") {
        (false, list)
    } else if let Some(list) = rest.strip_prefix("in") {
        (true, list)
    } else {
        return Err(bad("expected =, ==, !=, in or notin after the key"));
    };
    let list = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| bad("a value list is written (a,b)"))?;
    let values = list
        .split(',')
        .map(|v| label_value(v.trim(), requirement))
        .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
    if values.iter().all(String::is_empty) {
        return Err(bad("the value list is empty"));
    }
    let key = label_key(key, requirement)?;
    Ok(if is_in {
        Expression::In(key, values)
    } else {
        Expression::NotIn(key, values)
    })
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn label_key(key: &str, requirement: &str) -> Result<String, BadSelector> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    if !prefix_ok || !is_label_name(name) || name.is_empty() {
        return Err(BadSelector(format!(
            "{requirement:?}: {key:?} is not a label key"
        )));
    }
    Ok(key.to_string())
}

fn label_value(value: &str, requirement: &str) -> Result<String, BadSelector> {
    if is_label_name(value) {
        Ok(value.to_string())
    } else {
        Err(BadSelector(format!(
            "{requirement:?}: {value:?} is not a label value"
        )))
    }
}

/// Empty, or at most 63 of `[A-Za-z0-9-_.]` starting and ending alphanumeric.
fn is_label_name(text: &str) -> bool {
    text.is_empty()
        || (text.len() <= 63
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn every_form_kubectl_takes_is_read_and_matched_as_the_api_server_does() {
        let s = ShardSelector::parse("awsaccess.io/shard in (a, b),tier!=test,!legacy,team")
            .expect("parses");
        assert!(s.matches(&labels(&[("awsaccess.io/shard", "a"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("awsaccess.io/shard", "c"), ("team", "x")])));
        assert!(!s.matches(&labels(&[
            ("awsaccess.io/shard", "b"),
            ("team", "x"),
            ("legacy", "")
        ])));
        assert!(!s.matches(&labels(&[
            ("awsaccess.io/shard", "a"),
            ("tier", "test"),
            ("team", "x")
        ])));
        assert!(
            !s.matches(&labels(&[("awsaccess.io/shard", "a")])),
            "team must exist"
        );

        let eq = ShardSelector::parse("shard==blue").expect("parses");
        assert!(eq.matches(&labels(&[("shard", "blue")])));
        assert!(!eq.matches(&labels(&[])));
        let not_in = ShardSelector::parse("shard notin (blue)").expect("parses");
        assert!(not_in.matches(&labels(&[])), "notin matches an absent key");
        assert!(!not_in.matches(&labels(&[("shard", "blue")])));
        // The text given is what is sent to the API server.
        assert_eq!(eq.to_string(), "shard==blue");
    }

    #[test]
    fn a_broken_selector_is_refused_naming_the_requirement() {
        for (text, names) in [
            ("", "is empty"),
            ("shard in blue", "(a,b)"),
            ("shard in (a", "unclosed"),
            ("Shard/x=a", "\"Shard/x\" is not a label key"),
            ("shard=a b", "\"a b\" is not a label value"),
            ("shard=a,,team", "empty requirement"),
            ("shard between (a)", "expected =, ==, !=, in or notin"),
        ] {
            let error = ShardSelector::parse(text).expect_err(text).to_string();
            assert!(error.starts_with("--shard-selector: "), "{error}");
            assert!(error.contains(names), "{text:?}: {error}");
        }
    }
}
