"""A PDF's text, by poppler's pdftotext (poppler-utils, which `make test` installs)."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def pdf_text(pdf: bytes) -> str:
    assert pdf.startswith(b"%PDF-") and b"FontFile2" in pdf  # a PDF, its TrueType font embedded
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed; `make test` installs it")
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return done.stdout.decode()
