#!/usr/bin/env bash
# The Python the tests drive, in a virtualenv under the build directory
# (Debian's python3 refuses global pip installs): the OIP clients of the gRPC
# client test (tests/serve.rs, `python_grpc_clients_get_http_s_answer`),
# tritonclient[grpc] and kserve, and kubernetes-validate (the Kubernetes
# schemas and jsonschema) for tests/deploy.rs. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${CARGO_TARGET_DIR:-$PWD/target}/oip-clients/venv"
TRITONCLIENT=2.73.0
KSERVE=0.21.0
KUBERNETES_VALIDATE=1.37.0
# The installed versions (not both imported in one process: each registers the
# `inference` protobuf package, and Python refuses it twice).
installed() {
    "$VENV/bin/python" -c "from importlib.metadata import version
print(version('tritonclient'), version('kserve'), version('kubernetes-validate'))" 2>/dev/null
}
if [[ "$(installed)" == "$TRITONCLIENT $KSERVE $KUBERNETES_VALIDATE" ]]; then
    exit 0
fi
rm -rf "$VENV"
if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian splits venv (and ensurepip) out of python3.
    SUDO=""
    [[ "$(id -u)" -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        python3 python3-venv
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "tritonclient[grpc]==$TRITONCLIENT" "kserve==$KSERVE" \
    "kubernetes-validate==$KUBERNETES_VALIDATE"
echo "the tests' Python in $VENV"
