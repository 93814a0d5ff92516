//! Link settings of the shipped binary that Cargo's profiles cannot express.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    // Relative relocations packed (DT_RELR, glibc 2.36 and later, as in the Debian 12 image):
    // the loader reads a position-independent binary's relocation table once at start-up, and
    // unpacked it is 1 MB of the binary kept resident for nothing afterwards. Identical
    // functions folded into one (monomorphized copies that compiled alike; Rust promises no
    // function a unique address): 2% less code. Both measured in docs/performance.md ("The
    // largest sync's peak memory").
    if var("PROFILE") == "release"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        // Folding is the LLD linker's, which Rust links x86_64 Linux binaries with; elsewhere
        // the system linker may not know the flag.
        if var("CARGO_CFG_TARGET_ARCH") == "x86_64" {
            println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
        }
    }
}
