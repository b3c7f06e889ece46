"""The classifier shapes of the corpus, each as the book or the course builds it."""

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from fastai.vision.all import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    CropPad,
    CrossEntropyLossFlat,
    DataBlock,
    ImageBlock,
    ImageDataLoaders,
    LabelSmoothingCrossEntropy,
    Learner,
    MultiCategoryBlock,
    Normalize,
    Pipeline,
    RandomResizedCrop,
    RandomSplitter,
    RegexLabeller,
    Resize,
    ResizeMethod,
    accuracy,
    aug_transforms,
    create_head,
    densenet121,
    error_rate,
    get_image_files,
    imagenet_stats,
    parent_label,
    resnet18,
    squeezenet1_1,
    using_attr,
    vision_learner,
    xresnet18,
)

import __main__ as notebook  # the build's "notebook": tests/corpus/__main__.py
from tests.corpus import pictures, registrar

SHAPES: dict[str, Callable[[Path], object]] = {}  # by name: how each is made
shape = registrar(SHAPES)
HELPER_MODULE = "corpus_labels"  # written beside the pictures; not importable when compiling


def _datablock(root: Path, item_tfms: object, batch_tfms: object = None, **kw: object) -> object:
    return DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        splitter=RandomSplitter(valid_pct=0.2, seed=42),
        get_y=parent_label,
        item_tfms=item_tfms,
        batch_tfms=batch_tfms,
        **kw,
    ).dataloaders(root, bs=8, num_workers=0)


def _folder(root: Path, item_tfms: object, batch_tfms: object = None) -> object:
    pictures(root, "folder")
    return _datablock(root, item_tfms, batch_tfms)


@shape(
    "fastbook ch. 1",
    "ImageDataLoaders.from_name_func(label_func=is_cat)",
    "Resize(224)",
    "",
    "resnet18 (torchvision)",
)
def ch1_is_cat(root: Path) -> object:
    """fastbook ch. 1 and course22 lesson 1's cats: from_name_func, Resize(224)."""
    files = pictures(root, "name")
    dls = ImageDataLoaders.from_name_func(
        root, files, valid_pct=0.2, seed=42, label_func=notebook.is_cat, item_tfms=Resize(224), bs=8
    )
    return vision_learner(dls, resnet18, pretrained=False, metrics=error_rate)


@shape(
    "fastbook ch. 2",
    "DataBlock, parent_label, RandomSplitter",
    "Resize(128)",
    "",
    "squeezenet1_1 (torchvision)",
)
def ch2_resize_squeezenet(root: Path) -> object:
    """fastbook ch. 2's bears DataBlock, Resize(128), a torchvision squeezenet."""
    return vision_learner(_folder(root, Resize(128)), squeezenet1_1, pretrained=False)


@shape(
    "fastbook ch. 2",
    "DataBlock",
    "Resize(128, ResizeMethod.Squish)",
    "",
    "densenet121 (torchvision)",
)
def ch2_squish_densenet(root: Path) -> object:
    dls = _folder(root, Resize(128, ResizeMethod.Squish))
    return vision_learner(dls, densenet121, pretrained=False)


@shape(
    "fastbook ch. 2", "DataBlock", "Resize(128, ResizeMethod.Pad, pad_mode='zeros')", "", "resnet18"
)
def ch2_pad_zeros(root: Path) -> object:
    dls = _folder(root, Resize(128, ResizeMethod.Pad, pad_mode="zeros"))
    return vision_learner(dls, resnet18, pretrained=False)


@shape(
    "fastbook ch. 2, course22 lesson 2",
    "DataBlock",
    "RandomResizedCrop(224, min_scale=0.5)",
    "aug_transforms()",
    "resnet18",
)
def ch2_random_resized_crop_aug(root: Path) -> object:
    """fastbook ch. 2 and course22 lesson 2's final bears: RandomResizedCrop + aug_transforms()."""
    dls = _folder(root, RandomResizedCrop(224, min_scale=0.5), aug_transforms())
    return vision_learner(dls, resnet18, pretrained=False)


@shape(
    "fastbook ch. 5",
    "ImageDataLoaders.from_name_re",
    "Resize(460)",
    "aug_transforms(size=224, min_scale=0.75)",
    "resnet18, .to_fp16()",
)
def ch5_presizing_name_re(root: Path) -> object:
    """fastbook ch. 5's pets: from_name_re, presizing (Resize(460) then
    aug_transforms(size=224, min_scale=0.75)), mixed precision."""
    files = pictures(root, "name")
    dls = ImageDataLoaders.from_name_re(
        root,
        files,
        pat=r"(.+)_\d+.png$",
        item_tfms=Resize(460),
        batch_tfms=aug_transforms(size=224, min_scale=0.75),
        bs=8,
    )
    return vision_learner(dls, resnet18, pretrained=False).to_fp16()


@shape(
    "fastbook ch. 5",
    "DataBlock, using_attr(RegexLabeller(...), 'name') and a get_y from a module not "
    "installed when compiling",
    "Resize(460)",
    "aug_transforms(size=224, min_scale=0.75)",
    "resnet18",
)
def ch5_regex_labeller_helper_module(root: Path) -> object:
    """fastbook ch. 5's DataBlock with using_attr(RegexLabeller(...)), and a get_y from a
    module of the training machine's."""
    pictures(root, "name")
    (root / f"{HELPER_MODULE}.py").write_text("def label_of(name):\n    return name.lower()\n")
    sys.path.insert(0, str(root))
    helper = __import__(HELPER_MODULE)
    dls = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        splitter=RandomSplitter(seed=42),
        get_y=Pipeline([using_attr(RegexLabeller(r"(.+)_\d+.png$"), "name"), helper.label_of]),
        item_tfms=Resize(460),
        batch_tfms=aug_transforms(size=224, min_scale=0.75),
    ).dataloaders(root, bs=8, num_workers=0)
    return vision_learner(dls, resnet18, pretrained=False)


@shape(
    "fastbook ch. 6",
    "DataBlock from a DataFrame: MultiCategoryBlock, ColReader, ColSplitter",
    "RandomResizedCrop(128, min_scale=0.35)",
    "",
    "resnet18",
)
def ch6_multi_label_df(root: Path) -> object:
    """fastbook ch. 6's PASCAL: a DataFrame, ColReader, MultiCategoryBlock, RandomResizedCrop."""
    import pandas as pd

    files = pictures(root, "folder")
    both = [f.parent.name if i % 3 else f"{f.parent.name} square" for i, f in enumerate(files)]
    frame = pd.DataFrame(
        {
            "fname": [str(f.relative_to(root)) for f in files],
            "labels": both,
            "is_valid": [i % 5 == 0 for i in range(len(files))],
        }
    )
    dls = DataBlock(
        blocks=(ImageBlock, MultiCategoryBlock),
        splitter=ColSplitter("is_valid"),
        get_x=ColReader("fname", pref=str(root) + "/"),
        get_y=ColReader("labels", label_delim=" "),
        item_tfms=RandomResizedCrop(128, min_scale=0.35),
    ).dataloaders(frame, bs=8, num_workers=0)
    return vision_learner(dls, resnet18, pretrained=False)


@shape(
    "fastbook ch. 7",
    "DataBlock; plain Learner",
    "Resize(460)",
    "[*aug_transforms(size=224, min_scale=0.75), Normalize.from_stats(*imagenet_stats)]",
    "xresnet18 (fastai)",
)
def ch7_xresnet_normalize(root: Path) -> object:
    """fastbook ch. 7's imagenette: a plain Learner with xresnet, presizing, and
    Normalize.from_stats(*imagenet_stats) given explicitly."""
    dls = _folder(
        root,
        Resize(460),
        [*aug_transforms(size=224, min_scale=0.75), Normalize.from_stats(*imagenet_stats)],
    )
    return Learner(dls, xresnet18(n_out=dls.c), loss_func=CrossEntropyLossFlat(), metrics=accuracy)


@shape(
    "fastbook ch. 7",
    "ImageDataLoaders.from_df; LabelSmoothingCrossEntropy",
    "Resize(128)",
    "",
    "resnet18",
)
def ch7_label_smoothing_from_df(root: Path) -> object:
    """from_df, and fastbook ch. 7's label smoothing."""
    import pandas as pd

    files = pictures(root, "folder")
    frame = pd.DataFrame(
        {
            "fname": [str(f.relative_to(root)) for f in files],
            "label": [f.parent.name for f in files],
        }
    )
    dls = ImageDataLoaders.from_df(
        frame, root, fn_col="fname", label_col="label", item_tfms=Resize(128), bs=8
    )
    return vision_learner(dls, resnet18, pretrained=False, loss_func=LabelSmoothingCrossEntropy())


@shape("course22 lesson 1", "DataBlock", "Resize(192, method='squish')", "", "resnet18")
def course22_l1_squish(root: Path) -> object:
    """course22 lesson 1's birds: DataBlock, Resize(192, method='squish')."""
    return vision_learner(_folder(root, [Resize(192, method="squish")]), resnet18, pretrained=False)


@shape(
    "course22 lesson 3",
    "DataBlock",
    "Resize(192, method='squish')",
    "",
    "'convnext_atto' (timm, by name)",
)
def course22_l3_convnext_by_name(root: Path) -> object:
    """course22 lesson 3: a timm architecture by name (convnext), Resize(192, 'squish')."""
    dls = _folder(root, Resize(192, method="squish"))
    return vision_learner(dls, "convnext_atto", pretrained=False)


@shape("course22 lesson 3", "DataBlock", "Resize(224)", "", "'vit_tiny_patch16_224' (timm)")
def course22_l3_vit(root: Path) -> object:
    return vision_learner(_folder(root, Resize(224)), "vit_tiny_patch16_224", pretrained=False)


@shape(
    "course22 lesson 6",
    "ImageDataLoaders.from_folder(valid_pct=0.2)",
    "Resize(480, method='squish')",
    "aug_transforms(size=128, min_scale=0.75)",
    "'resnet26d' (timm), .to_fp16()",
)
def course22_l6_paddy_from_folder(root: Path) -> object:
    """course22 lesson 6's paddy: from_folder, Resize(480, 'squish') then
    aug_transforms(size=128, min_scale=0.75), timm resnet26d, mixed precision."""
    pictures(root, "folder")
    dls = ImageDataLoaders.from_folder(
        root,
        valid_pct=0.2,
        seed=42,
        item_tfms=Resize(480, method="squish"),
        batch_tfms=aug_transforms(size=128, min_scale=0.75),
        bs=8,
    )
    return vision_learner(dls, "resnet26d", pretrained=False).to_fp16()


@shape(
    "course22 lesson 6",
    "DataBlock",
    "Resize((256, 192), method='pad', pad_mode='zeros')",
    "aug_transforms(size=(171, 128), min_scale=0.75)",
    "'efficientnet_b0' (timm)",
)
def course22_l6_rectangular(root: Path) -> object:
    """course22's paddy at (height, width) sizes: Resize((256, 192), 'pad', 'zeros') then
    aug_transforms(size=(171, 128)), timm efficientnet."""
    dls = _folder(
        root,
        Resize((256, 192), method="pad", pad_mode="zeros"),
        aug_transforms(size=(171, 128), min_scale=0.75),
    )
    return vision_learner(dls, "efficientnet_b0", pretrained=False)


@shape(
    "a model of your own",
    "DataBlock; plain Learner(dls, model)",
    "[Resize(160), CropPad(128)]",
    "",
    "resnet18 body (torchvision), fastai's create_head",
)
def custom_head(root: Path) -> object:
    """A plain Learner on a model of the user's: a torchvision body, fastai's head;
    Resize then CropPad."""
    dls = _folder(root, [Resize(160), CropPad(128)])
    body = torch.nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])
    model = torch.nn.Sequential(body, create_head(512, dls.c))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
