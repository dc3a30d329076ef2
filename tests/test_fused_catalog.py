"""One task per OTA from raw to catalogue (issue 24): without a focal-plane correction ``OTACatalog`` detrends its OTA
itself, writes DetrendOTA's checkpoint and catalogues the image in memory (test-small night, test instrument)."""

import shutil
from pathlib import Path

import luigi
import pytest
from astropy.io import fits

from podisteps.catalog import detect
from workflows import failures
from workflows.astrometry import FixWCS, OTACatalog
from workflows.base import provenance_cards
from workflows.collect import CollectCells
from workflows.detrend import DetrendOTA
from workflows.focalplane import FocalPlaneSamples, image_task
from workflows.night import ReduceExposure
from workflows.options import ReductionOptions
from workflows.paths import night_index

NIGHT = "20131004"
OTA = 33


def _science():
    return night_index(NIGHT).select(obstype="OBJECT")[0]


def _catalog(obsid, **options):
    """The fused OTACatalog of OTA 33 as FixWCS asks for it (-fixwcs and ``options``)."""
    opts = ReductionOptions().replace(fixwcs=True, **options)
    return OTACatalog(obsid=obsid, ota=OTA, options=FixWCS.options_for(opts))


def _dag(root) -> dict:
    """``task_id -> task`` of every task below ``root`` (``root`` included)."""
    seen, todo = {}, [root]
    while todo:
        task = todo.pop()
        if task.task_id not in seen:
            seen[task.task_id] = task
            todo.extend(luigi.task.flatten(task.requires()))
    return seen


@pytest.mark.parametrize("options", [{"fixwcs": True, "photcalib": True}, {"fixwcs": True}, {},
                                     {"fixwcs": True, "fringe": "auto"}])
def test_one_node_per_ota_writes_each_detrended_checkpoint(small_night, podiflow_config, options):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals", masters="bias,dark,flat")
    sci = _science()
    tasks = _dag(ReduceExposure(obsid=sci.obsid, options={k: str(v).lower() for k, v in options.items()})).values()
    writers = [t.output()["detrended"].path for t in tasks if isinstance(t, OTACatalog) and t.fused]
    writers += [t.output().path for t in tasks if isinstance(t, DetrendOTA)]
    assert len(writers) == len(set(writers))  # no checkpoint has two tasks that make it
    science = [t for t in tasks if getattr(t, "obsid", None) == sci.obsid]
    families = sorted(t.get_task_family() for t in science if getattr(t, "ota", None) == OTA)
    fused = options.get("fixwcs") and not options.get("fringe")
    assert families == (["OTACatalog"] if fused else ["CorrectedOTA", "DetrendOTA", "OTACatalog"] if options
                        else ["DetrendOTA"])
    if fused:  # the final MEF and the sky fit read the fused task's checkpoint, with DetrendOTA's identity
        final = next(t for t in science if isinstance(t, CollectCells))
        image = final.requires()["otas"][OTA]
        samples = next(t for t in science if isinstance(t, FocalPlaneSamples))
        detrend = image.source()
        assert image is samples.requires()["detrend"][OTA] and isinstance(detrend, DetrendOTA)
        assert image.identity_for(final) == image.identity_for(samples) == detrend.identity != image.identity
        assert image.identity_for(FixWCS(obsid=sci.obsid, options=image.options)) == image.identity
        plain = FocalPlaneSamples(obsid=sci.obsid, options=samples.options)  # as before the fusion
        assert samples.catalogs and samples.identity == plain.identity
        assert provenance_cards(samples, {}) == provenance_cards(plain, {})  # PFPARAMS without ``catalogs``


def test_fused_products_equal_the_separate_tasks(small_night, podiflow_config, tmp_path, monkeypatch):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    sci = _science()
    task = _catalog(sci.obsid)
    assert image_task(sci.obsid, OTA, task.reduction_options) is task and task.fused
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    detrended, catalog = (Path(task.output()[k].path) for k in ("detrended", "catalog"))
    with fits.open(detrended) as hdul, fits.open(catalog) as cat:
        assert hdul[0].header["PFTASK"] == "DetrendOTA" and hdul[0].header["PFID"] == task.source().identity
        assert cat[0].header["PFTASK"] == "OTACatalog" and cat[0].header["PFIN001"] == f"detrended:{detrended}"
        assert len(cat["CAT.ODI"].data) > 20
    first = {p: p.read_bytes() for p in (detrended, catalog)}

    # the catalogue of the reloaded checkpoint equals the one made in memory; the checkpoint is not made again
    mtime = detrended.stat().st_mtime_ns
    catalog.unlink()
    luigi.task_register.Register.clear_instance_cache()
    assert luigi.build([_catalog(sci.obsid)], local_scheduler=True, log_level="WARNING")
    assert detrended.stat().st_mtime_ns == mtime and catalog.read_bytes() == first[catalog]

    # DetrendOTA writes the same bytes
    shutil.move(detrended, tmp_path / "fused.fits")
    DetrendOTA(obsid=sci.obsid, ota=OTA, options=task.source().options).run()
    assert detrended.read_bytes() == first[detrended]

    # a checkpoint cut short is made again, and the catalogue with it
    detrended.write_bytes(first[detrended][: len(first[detrended]) // 2])
    catalog.unlink()
    assert luigi.build([_catalog(sci.obsid)], local_scheduler=True, log_level="WARNING")
    assert all(p.read_bytes() == first[p] for p in (detrended, catalog))

    # a failure names the step: the detrend or the catalogue
    for path in (detrended, catalog):
        path.unlink()
    monkeypatch.setattr(detect, "source_catalog", _fail)
    luigi.task_register.Register.clear_instance_cache()
    failing = _catalog(sci.obsid)
    with pytest.raises(RuntimeError):
        failing.run()
    assert failures._label(failing) == f"OTACatalog(ota={OTA})" and detrended.exists() and not catalog.exists()
    detrended.unlink()
    monkeypatch.setattr(DetrendOTA, "_inputs", _fail)
    with pytest.raises(RuntimeError):
        failing.run()
    assert failures._label(failing) == f"DetrendOTA(ota={OTA})" and not detrended.exists()


def _fail(*args, **kwargs):
    raise RuntimeError("injected")
