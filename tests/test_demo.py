"""ganforge-demo: every model family's page called through Gradio's own client against a server on
localhost, one end-to-end run in a real headless Chromium, the port-taken message, and what a hostile
upload or web page can make the server do.

Each family trains once per session (tiny nets, a few batches) on the shared samples."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the demo needs the demo extra: pip install -e '.[demo]'")
gradio_client = pytest.importorskip("gradio_client")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from ganforge.cli import demo  # noqa: E402
from ganforge.cli.app import CONF_DIR  # noqa: E402
from ganforge.cli.demo.ui import ids_from_colours  # noqa: E402
from ganforge.cli.predict import predict  # noqa: E402
from ganforge.cli.train import train  # noqa: E402
from ganforge.models.base import COMPILED_FOR_INFERENCE  # noqa: E402
from ganforge.utils.errors import ConfigError  # noqa: E402
from tests.conftest import PAIRED_MINI, REPO, SHARED_DATA, SPADE_TINY, TINY, compose_train  # noqa: E402

pytestmark = pytest.mark.slow

COCO = SHARED_DATA / "coco_stuff_sample"
FROGS = SHARED_DATA / "cifar10_frog"
SINGAN_IMAGE = SHARED_DATA / "singan" / "Images" / "balloons.png"
PHOTO = PAIRED_MINI / "test" / "3.jpg"
FAMILIES = {
    "pix2pix": TINY,
    "bicyclegan": [*TINY, "model=bicyclegan"],
    "cyclegan": ["debug=tiny", "logger=csv", "data=cat2dog", "model=cyclegan", "data.load_size=32", "data.crop_size=32"],
    "spade": [*SPADE_TINY, "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"],
    "dcgan": [
        "model=dcgan",
        "data=image_folder",
        f"data.root={FROGS / 'train'}",
        f"data.val_root={FROGS / 'test'}",
        "debug=tiny",
        "logger=csv",
    ],
    "singan": [
        "model=singan",
        "data=single_image",
        "debug=tiny",
        "logger=csv",
        f"data.path={SINGAN_IMAGE}",
        "data.max_size=32",
        "data.min_size=20",
        "model.iters_per_scale=4",
        "model.lr_milestone=3",
        "data.iters_per_epoch=4",
    ],
}
QUIET = ["callbacks.rich_progress_bar=null", "callbacks.image_grid=null"]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """family -> last.ckpt, each trained on first use (in this process: no interpreter start-up per family)."""
    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            out = tmp_path_factory.mktemp(f"demo_{family}")
            train(compose_train(out, [*FAMILIES[family], *QUIET]))
            made[family] = out / "checkpoints" / "last.ckpt"
            assert made[family].is_file()
        return made[family]

    return get


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_cfg(ckpt: Path, out: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("demo", overrides=[f"ckpt_path={ckpt}", f"output={out}", *overrides])


@pytest.fixture
def serve(checkpoints, tmp_path):
    """serve(family, *demo overrides) -> (gradio_client.Client, url, backend) of a demo on a free localhost
    port, launched as ganforge-demo launches it; closed after."""
    running = []

    def start(family: str, *overrides: str):
        cfg = demo_cfg(checkpoints(family), tmp_path / "demo", *overrides)
        blocks, backend = demo.create(cfg)
        max_file_size, _ = demo.upload_limits(cfg)
        url = demo.launch(blocks, "127.0.0.1", free_port(), max_file_size, block=False)
        running.append(blocks)
        return gradio_client.Client(url, verbose=False, download_files=str(tmp_path / "downloads")), url, backend

    yield start
    for blocks in running:
        blocks.close()


def editor(path: Path) -> dict:
    """A canvas's value as a client sends it: the image as background and composite."""
    f = gradio_client.handle_file(str(path))
    return {"background": f, "layers": [], "composite": f, "id": None}


def upload(path: Path):
    return gradio_client.handle_file(str(path))


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def predict_cli_output(ckpt: Path, input_path: Path, out: Path, **opts) -> dict[str, np.ndarray]:
    """What ganforge-predict writes for one input: {file name: pixels}."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "predict", overrides=[f"ckpt_path={ckpt}", f"input={input_path}", f"output={out}", *(f"{k}={v}" for k, v in opts.items())]
        )
    report = predict(cfg)
    return {Path(p).name: pixels(p) for p in report["written"]}


# ----- each family through gradio_client ---------------------------------------------------------------
def test_pix2pix_translates_an_upload_at_its_size(serve):
    client, _, _ = serve("pix2pix")
    out, gallery = client.predict(upload(PHOTO), api_name="/translate")
    assert Image.open(out).size == Image.open(PHOTO).size
    assert [g["caption"] for g in gallery] == ["output"]


def test_cyclegan_both_directions_match_ganforge_predict(serve, checkpoints, tmp_path):
    client, _, backend = serve("cyclegan")
    assert backend.directions == ("AtoB", "BtoA")
    photo = next((SHARED_DATA / "cifar10_cat2dog" / "testB").iterdir())
    for direction in ("AtoB", "BtoA"):
        out, gallery = client.predict(upload(photo), None, direction, True, api_name="/translate")
        assert [g["caption"] for g in gallery] == ["output", "rec"]
        cli = predict_cli_output(checkpoints("cyclegan"), photo, tmp_path / direction, direction=direction, reconstruct=True)
        # the same code path: the page's output is the file ganforge-predict writes, pixel for pixel
        np.testing.assert_array_equal(pixels(out), cli[f"{photo.stem}.png"])
        np.testing.assert_array_equal(pixels(gallery[1]["image"]), cli[f"{photo.stem}_rec.png"])


def test_compile_true_serves_what_eager_predict_writes(serve, checkpoints, tmp_path):
    client, _, backend = serve("cyclegan", "compile=true")
    photo = next((SHARED_DATA / "cifar10_cat2dog" / "testB").iterdir())
    out, _ = client.predict(upload(photo), None, "AtoB", False, api_name="/translate")
    cli = predict_cli_output(checkpoints("cyclegan"), photo, tmp_path / "eager")
    assert np.abs(pixels(out).astype(int) - cli[f"{photo.stem}.png"]).max() <= 1  # float32 rounding
    assert backend.model.netG_A in COMPILED_FOR_INFERENCE


def test_bicyclegan_style_seed_samples_and_z_from_a_style_image(serve):
    client, _, backend = serve("bicyclegan")
    assert backend.style_option == "z_from"
    _, three = client.predict(upload(PHOTO), None, 7, 3, None, api_name="/translate")
    assert [g["caption"] for g in three] == ["0", "1", "2"]
    images = [pixels(g["image"]) for g in three]
    assert not np.array_equal(images[0], images[1])  # one z each
    first, again = client.predict(upload(PHOTO), None, 7, 3, None, api_name="/translate")
    np.testing.assert_array_equal(pixels(first), images[0])  # the seed fixes the styles
    np.testing.assert_array_equal(pixels(again[2]["image"]), images[2])
    style = PAIRED_MINI / "train" / "1.jpg"
    styled, gallery = client.predict(upload(PHOTO), None, 7, 3, upload(style), api_name="/translate")
    assert len(gallery) == 1 and not np.array_equal(pixels(styled), images[0])


def test_spade_paints_with_the_dataset_palette_and_class_names(serve, checkpoints, tmp_path):
    client, url, backend = serve("spade")
    classes = backend.label_classes()
    assert len(classes) == 183 and classes[0][0] == "person" and classes[181][0] == "wood"
    assert classes[182] == ("don't care", (0, 0, 0))
    # a canvas painted with two class colours (sky and grass), as the page sends it
    canvas = np.zeros((40, 48, 3), np.uint8)
    canvas[:20], canvas[20:] = classes[156][1], classes[123][1]
    painted = tmp_path / "painted.png"
    Image.fromarray(canvas).save(painted)
    out, gallery = client.predict(None, editor(painted), api_name="/synthesize")
    assert Image.open(out).size == (48, 40) and len(gallery) == 1
    # a label-map file goes through ganforge-predict's own reading: the same pixels as its output file
    label = sorted((COCO / "val_label").iterdir())[0]
    out, _ = client.predict(upload(label), editor(painted), api_name="/synthesize")
    cli = predict_cli_output(checkpoints("spade"), label, tmp_path / "cli")
    np.testing.assert_array_equal(pixels(out), cli[f"{label.stem}.png"])
    html = urllib.request.urlopen(url, timeout=30).read().decode()
    assert "<html" in html and "fonts.googleapis" not in html  # offline: no external fonts


def test_painted_colours_map_back_to_their_class_ids():
    palette = np.array([[0, 0, 0], [200, 0, 0], [0, 0, 200]], np.uint8)
    rgb = np.array([[[0, 0, 0], [200, 0, 0]], [[190, 10, 5], [0, 0, 200]]], np.uint8)  # one anti-aliased pixel
    np.testing.assert_array_equal(ids_from_colours(rgb, palette), [[0, 1], [1, 2]])


def test_dcgan_grid_by_seed_and_interpolation(serve, checkpoints, tmp_path):
    client, _, _ = serve("dcgan")
    grid = client.predict(3, 4, api_name="/samples")
    again = client.predict(3, 4, api_name="/samples")
    other = client.predict(4, 4, api_name="/samples")
    np.testing.assert_array_equal(pixels(grid), pixels(again))
    assert not np.array_equal(pixels(grid), pixels(other))
    linear, slerp = client.predict(3, 9, 5, api_name="/interpolate")
    w, h = Image.open(linear).size
    assert Image.open(slerp).size == (w, h) and w > 4 * h  # a strip of 5 frames


def test_singan_samples_at_a_size_and_harmonization(serve, tmp_path):
    client, _, backend = serve("singan")
    wide = client.predict(1.0, 2.0, 2, 0, 0, api_name="/singan_samples")
    assert len(wide) == 2
    w, h = Image.open(wide[0]["image"]).size
    assert 1.7 < w / h * (Image.open(SINGAN_IMAGE).height / Image.open(SINGAN_IMAGE).width) < 2.3
    assert not (Path(backend.work_dir) / "0000_samples" / "sifid.json").exists()
    mask = tmp_path / "mask.png"
    ref = Image.open(SINGAN_IMAGE).convert("RGB")
    m = Image.new("L", ref.size, 0)
    m.paste(255, (ref.width // 4, ref.height // 4, ref.width // 2, ref.height // 2))
    m.save(mask)
    gallery = client.predict("harmonization", editor(SINGAN_IMAGE), gradio_client.handle_file(str(mask)), 1, 0, api_name="/singan_inject")
    assert [g["caption"] for g in gallery] == ["harmonization_scale1.png", "harmonization_scale1_masked.png"]
    with pytest.raises(Exception, match="inject_scale=9 is out of range"):
        client.predict("harmonization", editor(SINGAN_IMAGE), gradio_client.handle_file(str(mask)), 9, 0, api_name="/singan_inject")


# ----- what the page reads is the file that was sent -------------------------------------------------
def test_a_16_bit_png_gives_what_ganforge_predict_gives(serve, checkpoints, tmp_path):
    client, _, _ = serve("pix2pix", "test_dropout=false")  # pix2pix's test-time dropout is random
    deep = tmp_path / "deep.png"
    ramp = np.linspace(1000, 60000, 48 * 40).reshape(40, 48)
    Image.fromarray(ramp.astype(np.uint16)).save(deep)
    assert Image.open(deep).mode.startswith("I")  # 16 bits per pixel in the file
    out, _ = client.predict(upload(deep), api_name="/translate")
    cli = predict_cli_output(checkpoints("pix2pix"), deep, tmp_path / "cli", test_dropout=False)
    np.testing.assert_array_equal(pixels(out), cli["deep.png"])


def test_the_documented_client_call_runs(serve, tmp_path, monkeypatch):
    _, url, _ = serve("pix2pix")
    doc = (REPO / "docs" / "demo.md").read_text()
    code = re.search(r"## Calling it from Python.*?```python\n(.*?)```", doc, re.S)[1]
    assert 'Client("http://127.0.0.1:7860/")' in code
    pair = Image.open(PHOTO)
    pair.crop((pair.width // 2, 0, pair.width, pair.height)).save(tmp_path / "facade_label.png")
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(code.replace("http://127.0.0.1:7860/", url), names)  # noqa: S102 (the docs' own snippet)
    assert Image.open(names["output"]).size == pair.crop((0, 0, pair.width // 2, pair.height)).size


def test_request_strings_are_taken_literally(checkpoints, tmp_path):
    _, backend = demo.create(demo_cfg(checkpoints("pix2pix"), tmp_path / "demo"))
    literal = "${oc.env:HOME}"
    opts = backend.options(direction=literal, z_from=literal)
    assert opts["direction"] == literal and opts.get("z_from") == literal


# ----- what a hostile upload or web page can make the server do ------------------------------------------
def png_header_only(w: int, h: int) -> bytes:
    """A PNG of w x h 8-bit grey pixels whose data holds one row: its header alone is right."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(w + 1)))
        + chunk(b"IEND", b"")
    )


def test_bad_uploads_get_ganforge_s_one_line_and_no_traceback(serve, tmp_path, capfd):
    client, _, _ = serve("pix2pix")
    cases = {
        "cut.jpg": (PHOTO.read_bytes()[:2000], "cut.jpg: truncated: the JPEG end marker is missing"),
        "empty.png": (b"", "empty.png: file is empty (0 bytes)"),
        "notes.txt": (b"not an image\n", "notes.txt: not an image file PIL can read"),
        "drawing.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "drawing.svg: not an image file PIL can read"),
        # the stall: under PIL's bomb limit, over the demo's; the one row of data shows that
        # nothing was decoded (that would fail as truncated)
        "zeros.png": (
            png_header_only(9000, 9000),
            "zeros.png: 9000x9000 = 81000000 pixels is over this demo's "
            "limit of 16777216 pixels (ganforge-demo max_pixels=); refused before decoding",
        ),
    }
    capfd.readouterr()
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        # as an uploaded file, and as a canvas a client sends (Gradio decodes a canvas: after the checks)
        for args in ((upload(path),), (None, editor(path))):
            with pytest.raises(gradio_client.exceptions.AppError) as e:
                client.predict(*args, api_name="/translate")
            assert str(e.value) == message
    log = capfd.readouterr()
    assert "Traceback" not in log.err + log.out
    with pytest.raises(gradio_client.exceptions.AppError, match="input: upload an image or draw on the canvas first"):
        client.predict(None, None, api_name="/translate")


def test_only_outputs_are_served(serve, tmp_path):
    client, url, backend = serve("pix2pix")
    out, _ = client.predict(upload(PHOTO), api_name="/translate")
    for name in (".hydra/config.yaml", "demo.log"):  # what Hydra and the log write in the demo's folder
        (backend.work_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (backend.work_dir / name).write_text("ckpt_path: /home/someone/secret.ckpt\n")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}gradio_api/file={(backend.work_dir / name).resolve()}", timeout=30)
        assert e.value.code == 403
    assert Image.open(out).size == Image.open(PHOTO).size  # the output itself was served


def request(url: str, method: str = "GET", data: bytes | None = None, **headers) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """A one-file upload form, as a browser posts it to /gradio_api/upload."""
    body = (
        b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="'
        + name.encode()
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + data
        + b"\r\n--b0undary--\r\n"
    )
    return body, "multipart/form-data; boundary=b0undary"


def test_only_this_host_and_same_origin_uploads_are_answered(serve):
    _, url, _ = serve("pix2pix", "max_file_size=1mb")
    port = url.rstrip("/").rsplit(":", 1)[1]
    # DNS rebinding: another site's page whose name resolves to 127.0.0.1 sends its own name as Host
    assert request(url, Host="rebind.attacker.example")[0] == 400
    assert request(url, Host=f"localhost:{port}")[0] == 200
    body, kind = multipart("a.png", png_header_only(8, 8))
    # another site's page posting to the upload route: refused before anything is stored
    status, text = request(f"{url}gradio_api/upload", "POST", body, Origin="http://attacker.example", **{"Content-Type": kind})
    assert (status, text) == (403, "cross-origin request refused")
    assert request(f"{url}gradio_api/upload", "POST", body, Origin="null", **{"Content-Type": kind})[0] == 403
    # the page itself (its own origin) and clients without an Origin upload
    assert request(f"{url}gradio_api/upload", "POST", body, Origin=url.rstrip("/"), **{"Content-Type": kind})[0] == 200
    big, kind = multipart("big.png", bytes(2 << 20))
    status, text = request(f"{url}gradio_api/upload", "POST", big, **{"Content-Type": kind})
    assert status == 413 and "maximum allowed size of 1048576 bytes" in text


def test_any_host_with_host_0_0_0_0():
    assert demo.request_guards("0.0.0.0")[0].kwargs["allowed_hosts"] == ["*"]
    assert demo.request_guards("127.0.0.1")[0].kwargs["allowed_hosts"] == ["127.0.0.1", "localhost"]


def test_uploads_and_outputs_are_deleted_when_the_demo_stops(checkpoints, tmp_path):
    cfg = demo_cfg(checkpoints("pix2pix"), tmp_path / "demo")
    blocks, _ = demo.create(cfg)
    url = demo.launch(blocks, "127.0.0.1", free_port(), demo.upload_limits(cfg)[0], block=False)
    try:
        client = gradio_client.Client(url, verbose=False, download_files=False)
        client.predict(upload(PHOTO), api_name="/translate")
        kept = [Path(p) for files in blocks.temp_file_sets for p in files]
        assert any(p.name == PHOTO.name for p in kept) and all(p.is_file() for p in kept)
    finally:
        blocks.close()
    canvas_background = {Path(p) for block in blocks.blocks.values() for p in getattr(block, "keep_in_cache", ())}
    assert not [p for p in kept if p.exists() and p not in canvas_background]


def test_bad_upload_limits_are_one_line(checkpoints, tmp_path):
    with pytest.raises(ConfigError, match="max_file_size=lots is not a size"):
        demo.upload_limits(demo_cfg(checkpoints("pix2pix"), tmp_path, "max_file_size=lots"))
    with pytest.raises(ConfigError, match="max_pixels=0 must be a positive number"):
        demo.upload_limits(demo_cfg(checkpoints("pix2pix"), tmp_path, "max_pixels=0"))
    assert demo.upload_limits(demo_cfg(checkpoints("pix2pix"), tmp_path)) == (20 << 20, 4096 * 4096)


# ----- the port is taken ----------------------------------------------------------------------------
def test_a_taken_port_is_one_clear_message(checkpoints, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            demo.check_port_free("127.0.0.1", port)
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "ganforge-demo"),
                f"ckpt_path={checkpoints('pix2pix')}",
                f"port={port}",
                f"output={tmp_path / 'cli'}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"Error: port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert f"port={port + 1}" in proc.stderr and "Traceback" not in proc.stderr


# ----- a real browser ------------------------------------------------------------------------------
def chromium_driver():
    """A headless Chromium driven through selenium, or the reason there is none."""
    try:
        from selenium import webdriver
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[dev]')"
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver_bin = shutil.which("chromedriver")
    if binary is None or driver_bin is None:
        return None, "no Chromium + chromedriver on PATH (Debian: apt-get install chromium chromium-driver; .ci/run does)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu", "--no-first-run"):
        opts.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_bin)
    return webdriver.Chrome(options=opts, service=service), None


def test_browser_uploads_translates_and_reads_the_output_back(serve, checkpoints, tmp_path):
    driver, reason = chromium_driver()
    if driver is None:
        pytest.skip(reason)
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _, url, _ = serve("pix2pix", "test_dropout=false")  # pix2pix's test-time dropout is random
    pair = Image.open(PHOTO)  # photo | label map; the model translates labels to photos (data.direction=BtoA)
    label = tmp_path / "facade_label.png"
    pair.crop((pair.width // 2, 0, pair.width, pair.height)).save(label)
    deep = tmp_path / "deep.png"  # 16 bits per pixel: the page must not convert it
    Image.fromarray(np.linspace(1000, 60000, 48 * 40).reshape(40, 48).astype(np.uint16)).save(deep)
    wait = WebDriverWait(driver, 60)
    # Gradio re-renders the <img> as it loads: read it in the page, not through a held element
    output_src = "const i = document.querySelector('#output-image img');return i && i.complete && i.naturalWidth > 0 ? i.src : null;"

    def translate_in_page(path: Path, previous: str | None) -> tuple[Image.Image, str]:
        """Upload `path`, press Translate: the output image the page shows, and its address."""
        state = (
            f"const s = (() => {{ {output_src} }})(); if (s && s !== {json.dumps(previous)}) return 'output';"
            "return (document.querySelector('.toast-body') || {}).innerText || null;"
        )
        # The page re-renders its components while it settles (an upload into the old one is lost);
        # until the upload is in, it says the input is empty. So: upload and press again while it says
        # so; any other message is a failure.
        for _ in range(20):
            try:
                driver.find_element(By.CSS_SELECTOR, "#input-image input[type=file]").send_keys(str(path))
                time.sleep(1)
                driver.find_element(By.CSS_SELECTOR, "#run").click()
            except StaleElementReferenceException:
                continue
            outcome = wait.until(lambda d: d.execute_script(state))
            if outcome == "output":
                break
            assert "upload an image or draw" in outcome, outcome
            driver.execute_script("document.querySelectorAll('.toast-body').forEach(t => t.remove())")
        src = wait.until(lambda d: d.execute_script(output_src))
        data = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(r => r.blob()).then(b => { const f = new FileReader();"
            " f.onload = () => done(f.result); f.readAsDataURL(b); });",
            src,
        )
        return Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))), src

    try:
        driver.get(url)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#run")))
        out, src = translate_in_page(label, None)
        cli = predict_cli_output(checkpoints("pix2pix"), label, tmp_path / "cli", test_dropout=False)
        np.testing.assert_array_equal(np.asarray(out.convert("RGB")), cli["facade_label.png"])
        # offline: every resource the page loaded came from the demo's own server
        resources = json.loads(driver.execute_script("return JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))"))
        assert resources and all(r.startswith(url.rstrip("/")) or r.startswith(("data:", "blob:")) for r in resources), resources
        (REPO / "docs").mkdir(exist_ok=True)
        driver.save_screenshot(str(REPO / "docs" / "demo.png"))
        out, _ = translate_in_page(deep, src)
        cli = predict_cli_output(checkpoints("pix2pix"), deep, tmp_path / "cli", test_dropout=False)
        np.testing.assert_array_equal(np.asarray(out.convert("RGB")), cli["deep.png"])
    finally:
        driver.quit()
