//! Counter-based pseudo-random numbers: `mix(seed, stream, i)` is a pure function, so the
//! workload needs no shared generator state between connections.

/// SplitMix64's finaliser (Steele, Lea, Flood 2014): a good 64-bit bijective mixer.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A well-mixed value for item `i` of an independent `stream` under `seed`.
pub fn mix(seed: u64, stream: u64, i: u64) -> u64 {
    splitmix(splitmix(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93)) ^ i)
}

/// A uniform value in [0, 1) from the top 53 bits.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A value in `0..n` (n > 0); the tiny modulo bias does not matter for a workload.
pub fn below(h: u64, n: u64) -> u64 {
    h % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_in_range_and_spread() {
        let values: Vec<f64> = (0..10_000).map(|i| unit(mix(7, 1, i))).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let below_half = values.iter().filter(|v| **v < 0.5).count();
        assert!((4_700..5_300).contains(&below_half), "{below_half}");
    }

    #[test]
    fn streams_and_seeds_differ() {
        assert_ne!(mix(1, 1, 5), mix(1, 2, 5));
        assert_ne!(mix(1, 1, 5), mix(2, 1, 5));
        assert_eq!(mix(1, 1, 5), mix(1, 1, 5));
    }
}
