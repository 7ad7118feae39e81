//! A small deterministic generator (SplitMix64) for the random accounts, values and
//! descriptions; a seed makes a run reproducible.

/// SplitMix64: fast, good enough for load generation, never for secrets.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }

    /// `length` random ASCII letters and digits.
    pub fn alphanumeric(&mut self, length: usize) -> String {
        (0..length)
            .map(|_| ALPHANUMERIC[self.between(0, ALPHANUMERIC.len() as u64 - 1) as usize] as char)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_alphabet_hold() {
        let mut rng = Rng::new(42);
        let mut seen = [false; 5];
        for _ in 0..10_000 {
            let account = rng.between(1, 5);
            assert!((1..=5).contains(&account));
            seen[account as usize - 1] = true;
            let value = rng.between(1, 10_000);
            assert!((1..=10_000).contains(&value));
        }
        assert!(seen.iter().all(|&hit| hit), "every account drawn");
        let text = rng.alphanumeric(10);
        assert_eq!(text.len(), 10);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()), "{text}");
        assert_eq!(Rng::new(7).next_u64(), Rng::new(7).next_u64());
    }
}
