"""Face embeddings with an ArcFace iresnet: extract, resume, export for the clustering tools.

Writes a few face crops (scikit-image sample photos), saves an r18 checkpoint
with random weights (use your own ``backbone.pth`` in practice), runs the same
extraction as ``embstore extract face --arch r18 --l2-norm``, resumes it,
looks at the store, and exports the ``final_embs_norm.npy`` /
``final_fpaths.npy`` / ``final_indices.npy`` files that ``02_cluster.py``
reads (then imports them back). Offline, about ten seconds on a CPU.

Run: ``python examples/face_extract.py``; output goes to
``$EMBSTORE_EXAMPLE_OUT`` (default: a temporary directory).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from embstore import Store
from embstore.legacy import export_face_npy, import_face_npy
from extractors.face.extractor import extract_face
from extractors.face.iresnet import iresnet


def write_faces(folder: Path) -> Path:
    """Face crops from sample photos, listed in a text file (one path per line)."""
    crops = {
        "astronaut.jpg": data.astronaut()[30:230, 150:330],
        "astronaut_flip.jpg": data.astronaut()[30:230, 150:330][:, ::-1],
        "cat.png": data.chelsea()[20:250, 100:330],
        "coffee.png": data.coffee()[50:350, 150:450],
        "portrait.jpg": data.camera()[40:220, 180:360],
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr in crops.items():
        Image.fromarray(np.ascontiguousarray(arr)).save(folder / name)
        paths.append(str(folder / name))
    listing = folder / "list.txt"
    listing.write_text("\n".join(paths) + "\n")
    return listing


def main() -> None:
    out = Path(os.environ.get("EMBSTORE_EXAMPLE_OUT") or tempfile.mkdtemp())
    listing = write_faces(out / "faces")
    torch.manual_seed(0)
    weights = out / "r18_random.pth"
    torch.save(iresnet("r18").state_dict(), weights)

    store = out / "faces.zarr"
    first = extract_face(
        weights,
        listing,
        store,
        arch="r18",
        l2_norm=True,
        batch_size=4,
        num_workers=0,
        device="cpu",
        limit=3,
    )
    print("first run:", first)
    second = extract_face(
        weights, listing, store, arch="r18", l2_norm=True, batch_size=4, num_workers=0, device="cpu"
    )
    print("resumed:  ", second)

    with Store.open(store) as st:
        print(st)
        print(st.coords[["path", "width", "height"]])
        emb = np.asarray(st.embedding.values, dtype=np.float32)
        paths = st.coords["path"].tolist()
    sims = emb @ emb.T
    a = paths.index(str(out / "faces" / "astronaut.jpg"))
    b = paths.index(str(out / "faces" / "astronaut_flip.jpg"))
    print(f"cosine(astronaut, mirrored astronaut) = {sims[a, b]:.3f}")

    npy = out / "01_output"
    files = export_face_npy(store, npy)
    print("exported:", [Path(f).name for f in files])
    back = import_face_npy(npy, out / "faces_from_npy.zarr")
    print(f"imported back {back['rows']} rows (normalized={back['normalized']})")


if __name__ == "__main__":
    main()
