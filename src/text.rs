//! Small helpers for the words of user-visible messages.

use std::fmt::Display;

/// `n` and `noun`, the noun in the plural unless `n` is 1: `count(1, "epoch")` is "1 epoch",
/// `count(3, "epoch")` "3 epochs". For the regular nouns of our messages (an `s` is added).
pub fn count<N: Display + PartialEq + From<u8>>(n: N, noun: &str) -> String {
    let noun = plural(&n, noun);
    format!("{n} {noun}")
}

/// `noun` as it follows the number `n`: itself for 1, else with an `s`.
pub fn plural<N: PartialEq + From<u8>>(n: &N, noun: &str) -> String {
    if *n == N::from(1) {
        noun.to_string()
    } else {
        format!("{noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1usize, "epoch"), "1 epoch");
        assert_eq!(count(0u64, "epoch"), "0 epochs");
        assert_eq!(count(2u32, "training image"), "2 training images");
        assert_eq!(plural(&1u64, "step"), "step");
        assert_eq!(plural(&15usize, "step"), "steps");
    }
}
