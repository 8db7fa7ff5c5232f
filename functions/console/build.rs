// Re-embed when the web build output changes (cargo scans the directory).
fn main() {
    println!("cargo:rerun-if-changed=web/dist");
}
