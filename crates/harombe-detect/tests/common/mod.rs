//! Shared helpers for the inspection tests: a seeded generator of test tokens built from
//! public token formats (never real credentials) and small assertions.
#![allow(dead_code)]

use harombe_detect::inspect::{Finding, Scanner};

pub const B62: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub const B32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
pub const HEX: &str = "0123456789abcdef";
pub const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const DIGITS: &str = "0123456789";
pub const UPPER_ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// `n` characters drawn from `alphabet`.
    pub fn s(&mut self, alphabet: &str, n: usize) -> String {
        let a = alphabet.as_bytes();
        (0..n).map(|_| char::from(a[self.below(a.len())])).collect()
    }
    /// Like [`Self::s`] but guaranteed to contain a digit and a letter.
    pub fn mixed(&mut self, n: usize) -> String {
        let mut s = self.s(B62, n - 2);
        s.insert(self.below(s.len()), 'q');
        s.insert(self.below(s.len()), '7');
        s
    }
    /// A card number of `len` digits starting with `prefix`, with a valid (or, when
    /// `valid` is false, a wrong) Luhn check digit.
    pub fn card(&mut self, prefix: &str, len: usize, valid: bool) -> String {
        let mut digits = prefix.to_owned();
        digits.push_str(&self.s(DIGITS, len - prefix.len() - 1));
        let check = luhn_check_digit(&digits);
        let check = if valid { check } else { (check + 1) % 10 };
        digits.push(char::from(b'0' + check));
        digits
    }
    /// An IBAN for `country` with a random BBAN of `bban_len` digits; check digits
    /// computed (valid) or off by one (invalid).
    pub fn iban(&mut self, country: &str, bban_len: usize, valid: bool) -> String {
        let bban = self.s(DIGITS, bban_len);
        let check = 98 - mod97(&format!("{bban}{country}00"));
        let check = if valid { check } else { check % 97 + 1 };
        format!("{country}{check:02}{bban}")
    }
}

pub fn luhn_check_digit(payload: &str) -> u8 {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

pub fn mod97(s: &str) -> u32 {
    s.bytes().fold(0u32, |rem, b| {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        }
    })
}

/// Secret bytes of a finding in `input` (test-side only: findings never hold them).
pub fn secret_of<'a>(input: &'a [u8], f: &Finding) -> &'a [u8] {
    &input[f.span.range()]
}

pub fn rule_ids(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.rule_id.as_str()).collect()
}

/// Asserts a finding's Debug, Display and JSON forms do not contain `secret`.
pub fn assert_no_leak(f: &Finding, secret: &[u8]) {
    let secret = String::from_utf8_lossy(secret);
    for (what, text) in [
        ("Debug", format!("{f:?}")),
        ("Display", f.to_string()),
        ("serde", serde_json::to_string(f).unwrap()),
    ] {
        assert!(
            !text.contains(secret.as_ref()),
            "{what} of {} leaks the secret: {text}",
            f.rule_id
        );
    }
}

pub fn builtin() -> Scanner {
    Scanner::builtin()
}
