# Developer shortcuts; CI runs .ci/run (the same steps on a fresh machine).
.PHONY: dev servers lint test bench samples docs

dev:
	python3 -m pip install -e '.[dev,bench]'

servers:
	scripts/install-test-servers.sh

lint:
	ruff check .
	ruff format --check .
	mypy

test:
	python -m pytest

bench:
	python bench/bench_clixml.py
	python bench/bench_posture.py

samples:
	python scripts/make_samples.py

docs:
	exconn rules --format markdown > docs/RULES.md
