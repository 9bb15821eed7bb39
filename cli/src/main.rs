//! The `xswap` command-line tool.
fn main() {
    println!("xswap: not yet available");
}
