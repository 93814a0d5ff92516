//! Who may assume an IAM role, read from its trust policy.

use serde_json::Value;

/// Decodes the URL-encoded policy documents IAM returns.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The principals the `Allow` statements of a trust policy name: `AWS:<arn or account>`,
/// `Service:<service>`, `Federated:<provider>`, `CanonicalUser:<id>`, or `*`.
pub fn trusted_principals(document: &str) -> Vec<String> {
    let text = if document.trim_start().starts_with('{') {
        document.to_string()
    } else {
        percent_decode(document)
    };
    let Ok(policy) = serde_json::from_str::<Value>(&text) else {
        return Vec::new();
    };
    let statements = match &policy["Statement"] {
        Value::Array(list) => list.clone(),
        single @ Value::Object(_) => vec![single.clone()],
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
        match &statement["Principal"] {
            Value::String(s) if s == "*" => out.push("*".to_string()),
            Value::Object(map) => {
                for (kind, value) in map {
                    let values = match value {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(items) => items
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                        _ => Vec::new(),
                    };
                    out.extend(values.into_iter().map(|v| format!("{kind}:{v}")));
                }
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_principal_form() {
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:root","222233334444"]},"Action":"sts:AssumeRole"},
            {"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com","Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.eks"},"Action":"sts:AssumeRoleWithWebIdentity"},
            {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"sts:AssumeRole"}]}"#;
        assert_eq!(
            trusted_principals(policy),
            [
                "AWS:222233334444",
                "AWS:arn:aws:iam::111122223333:root",
                "Federated:arn:aws:iam::111122223333:oidc-provider/oidc.eks",
                "Service:ec2.amazonaws.com",
            ]
        );
        let encoded = "%7B%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%22%2A%22%7D%7D";
        assert_eq!(trusted_principals(encoded), ["*"]);
        assert!(trusted_principals("not json").is_empty());
    }
}
