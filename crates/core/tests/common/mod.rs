//! Helpers shared by the core's integration tests.

/// Scales a stress test's iteration count down under valgrind and the
/// sanitizers (`SLUICE_STRESS_DIVISOR`, see scripts/valgrind.sh), which run
/// ~10-50x slower.
pub fn stress(n: usize) -> usize {
    let divisor: usize = std::env::var("SLUICE_STRESS_DIVISOR")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    (n / divisor.max(1)).max(1)
}
