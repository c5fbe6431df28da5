//! Gives the shared library a versioned SONAME (`libringkv.so.<major>`), so
//! programs linked against it load a compatible ABI only.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libringkv.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
