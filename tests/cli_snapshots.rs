//! Snapshot tests of the `kmscodec` command line with `trycmd`: the help texts of the key
//! administration commands and the messages (and exit codes) of bad invocations, in
//! `tests/cmd/*.trycmd`. Every bad invocation there fails before any key provider or running
//! process is contacted, so these tests need no server.
//!
//! After a deliberate change of a text, refresh the snapshots with
//! `TRYCMD=overwrite cargo test --test cli_snapshots` and review the diff.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new()
        .register_bin(
            "kmscodec",
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_kmscodec")),
        )
        .case("tests/cmd/*.trycmd");
}
