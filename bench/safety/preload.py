"""Imported once by the safety forkserver: loads the framework named in $SERBENCH_SAFETY_FRAMEWORK,
so each forked load starts with the framework in memory and nothing else done."""

import os

import frameworks

frameworks.get_adapter(os.environ["SERBENCH_SAFETY_FRAMEWORK"])
