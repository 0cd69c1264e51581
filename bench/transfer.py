"""HTTP transfer benchmark: uploading and downloading one file through a real ``sanctum serve``,
against copying the same file locally, in the same run; and the server's peak memory.

    .venv/bin/python bench/transfer.py [--mib 1024]
    .venv/bin/python bench/transfer.py --mib 5120          # peak memory of a 5 GiB upload

The server runs on a temp data dir on 127.0.0.1 with ``SANCTUM_REQUIRE_2FA=off`` (the benchmark's
owner would otherwise have to enrol TOTP; it changes nothing on the data path). The file is
generated (not all zeros), uploaded with a streamed body (1 MiB chunks, Content-Length set),
committed, downloaded to disk, and compared by SHA-256. Local copy = ``shutil.copyfile`` + fsync of
the same file on the same disk: the floor for moving these bytes at all.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHUNK = 1024 * 1024
PASSWORD = "bench transfer passphrase 2026"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_file(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(CHUNK)
    with path.open("wb") as out:
        for i in range(mib):
            piece = block[i % 256 :] + block[: i % 256]  # differs per MiB, cheap to make
            out.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def file_chunks(path: Path):
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            yield chunk


def rss_mib(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> None:
    """Start the peak-RSS count afresh (Linux >= 4.0), so the login's argon2 (64 MiB by design)
    does not hide what the upload itself costs."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB (default 1024)")
    args = parser.parse_args()
    sanctum = str(Path(sys.executable).with_name("sanctum"))
    with tempfile.TemporaryDirectory(prefix="sanctum-bench-") as tmp:
        root = Path(tmp)
        data, src = root / "data", root / "source.bin"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
        env.update(SANCTUM_REQUIRE_2FA="off", SANCTUM_MAX_UPLOAD_BYTES=str((args.mib + 1) * CHUNK))
        subprocess.run([sanctum, "init", "--data-dir", str(data)], env=env, check=True, capture_output=True)
        (root / "pw").write_text(PASSWORD)
        subprocess.run(
            [
                sanctum,
                "admin",
                "user",
                "create",
                "bench@example.org",
                "--data-dir",
                str(data),
                "--password-file",
                str(root / "pw"),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        print(f"generating {args.mib} MiB …", flush=True)
        sha = make_file(src, args.mib)

        start = time.perf_counter()
        shutil.copyfile(src, root / "copy.bin")
        with (root / "copy.bin").open("rb") as f:
            os.fsync(f.fileno())
        local_s = time.perf_counter() - start
        (root / "copy.bin").unlink()

        port = free_port()
        server = subprocess.Popen(
            [sanctum, "serve", "--data-dir", str(data), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            token = httpx.post(
                f"{url}/api/v1/auth/token", json={"email": "bench@example.org", "password": PASSWORD}
            ).json()["token"]
            with httpx.Client(
                base_url=f"{url}/api/v1/projects/bench",
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,
            ) as c:
                httpx.post(
                    f"{url}/api/v1/projects",
                    json={"name": "bench"},
                    headers={"Authorization": f"Bearer {token}"},
                ).raise_for_status()
                c.post("/datasets", json={"name": "files"}).raise_for_status()
                c.post("/datasets/files/versions").raise_for_status()
                reset_peak(server.pid)
                rss_before = rss_mib(server.pid, "VmRSS")
                start = time.perf_counter()
                r = c.put(
                    "/datasets/files/versions/1/files/source.bin",
                    content=file_chunks(src),
                    headers={"Content-Length": str(src.stat().st_size)},
                )
                upload_s = time.perf_counter() - start
                r.raise_for_status()
                assert r.json()["sha256"] == sha, "server recorded another hash"
                rss_upload = rss_mib(server.pid)
                c.post("/datasets/files/versions/1/commit").raise_for_status()
                digest = hashlib.sha256()
                start = time.perf_counter()
                with (
                    c.stream("GET", "/datasets/files/versions/1/files/source.bin") as resp,
                    (root / "down.bin").open("wb") as out,
                ):
                    resp.raise_for_status()
                    for chunk in resp.iter_bytes(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                download_s = time.perf_counter() - start
                assert digest.hexdigest() == sha, "downloaded bytes differ"
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    mib = args.mib
    up, down = local_s / upload_s, local_s / download_s
    print(f"\n{mib} MiB, one file, 127.0.0.1, one server worker")
    print(f"  local copy + fsync      {mib / local_s:8.0f} MiB/s")
    print(f"  HTTP upload (encrypt)   {mib / upload_s:8.0f} MiB/s   ratio to local copy {up:.2f}")
    print(f"  HTTP download (decrypt) {mib / download_s:8.0f} MiB/s   ratio to local copy {down:.2f}")
    print(
        f"  server RSS {rss_before:.0f} MiB before the upload, peak {rss_upload:.0f} MiB during it "
        f"(+{rss_upload - rss_before:.0f} MiB; target: under 200 MiB for a 5 GiB upload)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
