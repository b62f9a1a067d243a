# gencomp_jax — the two commands: `make demo` and `make test`.
# Each bootstraps .venv on a fresh machine (only python3 >= 3.11 and the package index needed).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Persistent XLA compilation cache: most of a small test's time is compilation.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0.5
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test demo venv bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

# Trains the runlocal hyperprior at two rates on scikit-image's photos, evaluates both on Kodak with
# real files, writes demo_out/rd.json (+ per-run JSON and per-image CSV) and demo_out/rd.png.
DEMO_LAMBDAS ?= 0.004,0.02
demo: $(STAMP)
	$(PY) experiments/sweep.py --config configs/hyperprior.py:runlocal --workdir demo_out \
	    --key model.lmbda --values $(DEMO_LAMBDAS) --metrics psnr-rgb,ms-ssim,lpips-alex --reference balle2018 --verbosity=-1

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache demo_out
