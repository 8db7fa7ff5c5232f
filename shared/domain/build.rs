//! Embeds every `migrations/V<n>__<name>.sql` file, in version order, so the
//! same SQL ships inside the binaries that run in Lambda, locally and in CI.
use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut found: Vec<(u32, String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir).expect("migrations/ directory") {
        let path = entry.expect("migrations entry").path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        println!("cargo:rerun-if-changed={}", path.display());
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let (version, name) = stem
            .strip_prefix('V')
            .and_then(|rest| rest.split_once("__"))
            .unwrap_or_else(|| panic!("migration {file} is not named V<n>__<name>.sql"));
        let version: u32 = version
            .parse()
            .unwrap_or_else(|_| panic!("migration {file}: bad version"));
        found.push((version, name.to_string(), fs::canonicalize(&path).unwrap()));
    }
    found.sort_by_key(|(v, _, _)| *v);
    for pair in found.windows(2) {
        assert!(
            pair[0].0 != pair[1].0,
            "two migrations share version {}",
            pair[0].0
        );
    }
    let mut out = String::from("pub(crate) static MIGRATIONS: &[Migration] = &[\n");
    for (version, name, path) in &found {
        out.push_str(&format!(
            "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("migrations.rs");
    fs::write(dest, out).unwrap();
}
