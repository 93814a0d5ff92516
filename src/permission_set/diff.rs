//! A readable difference between two policy documents, for `plan`: both pretty-printed with
//! sorted keys, compared line by line (the longest common subsequence), `-` for a line only in
//! what AWS holds, `+` for one only in what the object declares.

use serde_json::Value;

fn lines(document: Option<&Value>) -> Vec<String> {
    document
        .and_then(|d| serde_json::to_string_pretty(d).ok())
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The changed lines, with a line of context around each run of changes.
pub fn policy_diff(held: Option<&Value>, declared: Option<&Value>) -> Vec<String> {
    let (old, new) = (lines(held), lines(declared));
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut all = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            all.push((' ', old[i].clone()));
            i += 1;
            j += 1;
        } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
            all.push(('-', old[i].clone()));
            i += 1;
        } else {
            all.push(('+', new[j].clone()));
            j += 1;
        }
    }
    let changed = |k: usize| all.get(k).is_some_and(|(mark, _)| *mark != ' ');
    all.iter()
        .enumerate()
        .filter(|(k, (mark, _))| *mark != ' ' || changed(k + 1) || (*k > 0 && changed(k - 1)))
        .map(|(_, (mark, line))| format!("{mark} {line}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_changed_lines_and_their_neighbours() {
        let held = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
        let declared = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
        let diff = policy_diff(Some(&held), Some(&declared));
        assert_eq!(
            diff,
            [
                "      {",
                "-       \"Action\": \"s3:*\",",
                "+       \"Action\": \"s3:GetObject\",",
                "        \"Effect\": \"Allow\",",
            ]
        );
        assert!(policy_diff(Some(&held), Some(&held)).is_empty());
        let added = policy_diff(None, Some(&declared));
        assert!(added.iter().all(|l| l.starts_with('+')), "{added:?}");
        let removed = policy_diff(Some(&held), None);
        assert!(removed.iter().all(|l| l.starts_with('-')), "{removed:?}");
    }
}
