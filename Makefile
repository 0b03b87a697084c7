# The two commands of the README. Both install what they need first and are idempotent.
.PHONY: up test
up:
	scripts/bootstrap.sh
	.venv/bin/ragway up $(ARGS)

test:
	scripts/test.sh $(ARGS)
