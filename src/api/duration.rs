//! Durations as written in manifests: `90s`, `15m`, `8h`, `1h30m` (Go's notation without
//! fractions or sub-second units, which nothing in this API needs).

use std::time::Duration;

/// The longest duration any field takes (`rules::MAX_DURATION`).
pub const MAX: Duration = Duration::from_secs(8760 * 3600);

/// Parses `1h30m`-style durations. `None` when the text is not one.
pub fn parse(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for ch in text.chars() {
        if let Some(digit) = ch.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(digit))?,
            );
            continue;
        }
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    if number.is_some() {
        return None; // trailing digits without a unit
    }
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        let cases = [
            ("90s", Some(90)),
            ("15m", Some(900)),
            ("8h", Some(28_800)),
            ("1h30m", Some(5_400)),
            ("1h0m5s", Some(3_605)),
            ("", None),
            ("10", None),
            ("h", None),
            ("1d", None),
            ("1.5h", None),
            ("-1h", None),
            ("99999999999999999999h", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).map(|d| d.as_secs()), expected, "{text:?}");
        }
        assert_eq!(
            parse(super::super::rules::MAX_DURATION),
            Some(MAX),
            "the CEL rule and the Rust check share one maximum"
        );
    }
}
