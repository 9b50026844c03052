//! Sizes as Docker prints them (its go-units package): decimal units, and the number
//! as Go's `%.Ng` writes it.

const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

/// `units.HumanSize`, four significant digits ("1.234kB", "123.5MB"): the space
/// `prune` reclaimed.
pub fn human_size(bytes: u64) -> String {
    with_precision(bytes, 4)
}

/// `units.HumanSizeWithPrecision(size, 3)` ("4.26MB"): the SIZE column of image lists.
pub fn image_size(bytes: u64) -> String {
    with_precision(bytes, 3)
}

fn with_precision(bytes: u64, precision: usize) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_general(value, precision), UNITS[unit])
}

/// Go's `%.{precision}g` for a value from 0 to 1000: the shortest of plain and
/// scientific notation by Go's rule, without trailing zeros.
fn go_general(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let precision = precision.max(1);
    // The exponent after rounding: 999.95 at four digits is 1e+03.
    let rounded: f64 = format!("{value:.*e}", precision - 1)
        .parse()
        .unwrap_or(value);
    let exponent = rounded.abs().log10().floor() as i32;
    let digits = i32::try_from(precision).unwrap_or(i32::MAX);
    if exponent < -4 || exponent >= digits {
        let mantissa = format!("{:.*}", precision - 1, rounded / 10f64.powi(exponent));
        return format!(
            "{}e{}{:02}",
            trim_fraction(&mantissa),
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    }
    let decimals = usize::try_from(digits - 1 - exponent).unwrap_or(0);
    trim_fraction(&format!("{rounded:.decimals$}")).to_owned()
}

fn trim_fraction(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaimed_space_has_four_significant_digits() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(12), "12B");
        assert_eq!(human_size(1234), "1.234kB");
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
        assert_eq!(human_size(999_950), "1000kB");
    }

    #[test]
    fn image_sizes_have_three_significant_digits() {
        assert_eq!(image_size(0), "0B");
        assert_eq!(image_size(512), "512B");
        assert_eq!(image_size(4_261_000), "4.26MB");
        assert_eq!(image_size(1_500_000_000), "1.5GB");
        assert_eq!(image_size(12_345), "12.3kB");
        assert_eq!(image_size(123_456_789), "123MB");
        assert_eq!(image_size(2_000_000), "2MB");
        assert_eq!(image_size(999_900), "1e+03kB");
    }
}
