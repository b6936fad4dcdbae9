//! The Python of `tests/clients/install.sh`'s virtualenv (the OIP clients
//! and the Kubernetes schema validator the tests drive).

use std::path::{Path, PathBuf};

/// Its interpreter; the test fails, saying how to install it, when it is missing.
pub fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("oip-clients/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run bash tests/clients/install.sh",
        python.display()
    );
    python
}
