//! Placeholder: see the benchmark issue.
fn main() {}
