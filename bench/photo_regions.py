"""A natural-image classification task built offline from photographs in Debian packages.

    .venv/bin/python bench/photo_regions.py [--root bench/.cache/photo_regions]

No image data set can be downloaded here, and digits upscaled from 8x8 have none of the
statistics (textures, colour, lighting) that decide how a trained ViT behaves under int8. The
photographs that ship in Debian's wallpaper packages do: 22 landscape photographs (flowers,
grass, water, forest, sky, a pier in fog...) become 22 classes. Each photograph is cut in two
*disjoint* regions: training crops come from its left 68 %, held-out crops from its right 30 %
(a 2 % gap in between), so no held-out pixel was ever seen in training and the task is to
recognise a scene from a part of it never shown -- a texture/scene recognition problem.

Crops have random position and side (20-60 % of the photo's height for training, 22-45 % for
held-out) and are stored at 160 px: the models read them through their own preprocessing
(resize + centre crop), exactly as ``vitdeploy eval`` does.

Needs: ``apt-get install mate-backgrounds plasma-workspace-wallpapers`` (about 140 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

# (class name, path under /usr/share, Debian package). Photographs only: no digital art.
PHOTOS = (
    ("water_drop", "backgrounds/mate/nature/Aqua.jpg", "mate-backgrounds"),
    ("leaf_stripes", "backgrounds/mate/nature/Blinds.jpg", "mate-backgrounds"),
    ("dune_grass", "backgrounds/mate/nature/Dune.jpg", "mate-backgrounds"),
    ("orange_flower", "backgrounds/mate/nature/FreshFlower.jpg", "mate-backgrounds"),
    ("marigold", "backgrounds/mate/nature/Garden.jpg", "mate-backgrounds"),
    ("meadow", "backgrounds/mate/nature/GreenMeadow.jpg", "mate-backgrounds"),
    ("ladybird", "backgrounds/mate/nature/LadyBird.jpg", "mate-backgrounds"),
    ("raindrops", "backgrounds/mate/nature/RainDrops.jpg", "mate-backgrounds"),
    ("storm", "backgrounds/mate/nature/Storm.jpg", "mate-backgrounds"),
    ("dandelion", "backgrounds/mate/nature/TwoWings.jpg", "mate-backgrounds"),
    ("wood", "backgrounds/mate/nature/Wood.jpg", "mate-backgrounds"),
    ("yellow_flower", "backgrounds/mate/nature/YellowFlower.jpg", "mate-backgrounds"),
    ("jetty", "wallpapers/BytheWater/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("pier_fog", "wallpapers/ColdRipple/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("blue_lake", "wallpapers/DarkestHour/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("boats", "wallpapers/EveningGlow/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("fallen_leaf", "wallpapers/FallenLeaf/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("facade", "wallpapers/Grey/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("kite_sky", "wallpapers/Kite/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("moss", "wallpapers/OneStandsOut/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("forest_path", "wallpapers/Path/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
    ("dusk_lake", "wallpapers/summer_1am/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers"),
)
SHARE = Path("/usr/share")
CROP_PX = 160
TRAIN_REGION = (0.0, 0.68)  # fractions of the photo's width
HELDOUT_REGION = (0.70, 1.0)


def class_names() -> list[str]:
    return [name for name, _, _ in PHOTOS]


def _read_photo(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _crops(photo: np.ndarray, region: tuple[float, float], side_range: tuple[float, float], n: int,
           rng: np.random.Generator) -> np.ndarray:
    """``n`` square crops (uint8, CROP_PX) with random side and position inside the region's columns."""
    from PIL import Image

    h, w = photo.shape[:2]
    x0, x1 = int(region[0] * w), int(region[1] * w)
    out = np.empty((n, CROP_PX, CROP_PX, 3), dtype=np.uint8)
    for i in range(n):
        side = max(32, min(int(h * rng.uniform(*side_range)), h, x1 - x0))
        top = int(rng.integers(0, h - side + 1))
        left = x0 + int(rng.integers(0, x1 - x0 - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((CROP_PX, CROP_PX),
                                                                               Image.Resampling.BICUBIC)
        out[i] = np.asarray(crop)
    return out


def missing_photos() -> list[str]:
    return sorted({pkg for _, rel, pkg in PHOTOS if not (SHARE / rel).is_file()})


def build(root: Path, train_per_class: int = 320, heldout_per_class: int = 40, calib_images: int = 64,
          seed: int = 0) -> dict:
    """Write ``root``: train.npz (uint8 pool + labels), heldout/<class>/*.png, calib/*.png, info.json."""
    from PIL import Image

    marker = root / "info.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    missing = missing_photos()
    if missing:
        raise SystemExit(f"the photographs come from Debian packages: apt-get install {' '.join(missing)}")
    rng = np.random.default_rng(seed)
    pool, labels, sources = [], [], []
    for c, (name, rel, pkg) in enumerate(PHOTOS):
        photo = _read_photo(SHARE / rel)
        sources.append({"class": name, "file": str(SHARE / rel), "package": pkg, "size": list(photo.shape[:2]),
                        "sha256": hashlib.sha256((SHARE / rel).read_bytes()).hexdigest()})
        pool.append(_crops(photo, TRAIN_REGION, (0.2, 0.6), train_per_class, rng))
        labels += [c] * train_per_class
        held = _crops(photo, HELDOUT_REGION, (0.22, 0.45), heldout_per_class, rng)
        folder = root / "heldout" / f"{c:02d}_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(held):
            Image.fromarray(img).save(folder / f"{name}_{i:03d}.png")
    pool = np.concatenate(pool)
    labels = np.asarray(labels, dtype=np.int64)
    np.savez(root / "train.npz", pixels=pool, labels=labels)
    (root / "calib").mkdir(parents=True, exist_ok=True)
    for i, j in enumerate(rng.permutation(len(pool))[:calib_images]):  # from the training regions only
        Image.fromarray(pool[j]).save(root / "calib" / f"calib_{i:03d}.png")
    (root / "labels.txt").write_text("\n".join(class_names()) + "\n")
    info = {"classes": len(PHOTOS), "train": int(len(pool)), "heldout": heldout_per_class * len(PHOTOS),
            "calib": calib_images, "crop_px": CROP_PX, "train_region": TRAIN_REGION,
            "heldout_region": HELDOUT_REGION, "seed": seed, "sources": sources}
    marker.write_text(json.dumps(info, indent=1))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent / ".cache" / "photo_regions")
    args = parser.parse_args()
    info = build(args.root)
    print(json.dumps({k: v for k, v in info.items() if k != "sources"}))


if __name__ == "__main__":
    main()
