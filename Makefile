# The two commands a new machine needs: `make run` and `make test`. Both set everything up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := busybox-static gcc libc6-dev linux-libc-dev libseccomp2 libseccomp-dev python3-venv iproute2 util-linux procps curl wrk
GUEST ?= sh -c 'echo hello from a translated busybox; uname -sr; ls /; cat /etc/passwd | wc -l; echo $$((6*7))'

.PHONY: run test setup system-packages bench clean

run: setup
	$(BIN)/linuxabi run -- $(GUEST)

test: setup
	$(BIN)/python -m pytest -q tests
	$(BIN)/linuxabi conformance

# The bytecode is (re)written every time: start-up pays ~90 ms more for recompiling the sources
# where PYTHONDONTWRITEBYTECODE is set, and compileall only redoes what is stale.
setup: $(VENV)/.installed
	$(BIN)/python -m compileall -q linuxabi syscalls vfs net caps bench >/dev/null
	$(BIN)/python -m linuxabi.host.vm_build
	$(BIN)/python -m net.tapio_build
	$(BIN)/python -m net.mypyc_build
	$(BIN)/python -m linuxabi.client_build
	$(BIN)/python -m linuxabi.host.launcher_build

$(VENV)/.installed: pyproject.toml | system-packages
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# compat: the repository itself on sys.path through a plain .pth; the default editable
	# finder costs every linuxabi start ~25 ms (it is consulted on each import).
	$(BIN)/pip install -q -e '.[test,compile]' --config-settings editable_mode=compat
	touch $@

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

bench: setup
	$(BIN)/python -m pytest -q bench --benchmark-only

clean:
	rm -rf $(VENV) build *.egg-info
