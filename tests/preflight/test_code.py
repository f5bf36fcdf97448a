"""Code and files verification (3.1-3.4)."""
import pytest

from deploycheck import checklist
from deploycheck.checks import code

ITEMS = checklist.default()


@pytest.mark.item("3.1")
def test_latest_code_pulled(host, bot_dir, evidence):
    evidence.update(code.check_checkout(host, bot_dir))


@pytest.mark.item("3.2")
def test_release_checked_out(host, bot_dir, request, evidence):
    # its Commit is the run's bot commit (the ledger entry and the report read it from here)
    evidence.update(code.check_release(host, bot_dir, request.config.option.release_ref,
                                       request.config.option.previous_ref))


@pytest.mark.item("3.3")
@pytest.mark.parametrize("relative", ITEMS["3.3"].subchecks)
def test_migration_files_exist(host, bot_dir, relative, evidence):
    evidence.update(code.check_file(host, bot_dir, relative))


@pytest.mark.item("3.4")
@pytest.mark.parametrize("document", ITEMS["3.4"].subchecks)
def test_release_document_exists(host, bot_dir, document, evidence):
    evidence[document] = code.find_document(host, bot_dir, document)


@pytest.mark.item("3.4")
def test_documentation_reviewed(attestation):
    assert attestation.text


@pytest.mark.item("3.2+image")
def test_release_image(release_image, evidence):
    if release_image is None:
        pytest.skip("not a Docker shop (--service compose:SERVICE): the release is the checkout 3.2 checked")
    evidence.update({"Image": release_image.tag, "Image Id": release_image.id, "Bases": release_image.bases,
                     "Built From": f"{release_image.ref} ({release_image.commit})" if release_image.commit else
                     "as given (--release-image)"})
