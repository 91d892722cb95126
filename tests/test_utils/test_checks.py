# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
"""Bad input to the tools gets an error that names the problem and the fix
before anything runs (mmrepvit/utils/checks.py): configs, checkpoints and
data paths that do not exist, an FPN that expects other widths than the
backbone gives, dataloader settings that do not exist, and --cfg-options keys
that would change nothing. Odd images:
grayscale and RGBA ones load as 3 channels, an unreadable one is named."""
import argparse
import os
import re
import shutil

import cv2
import numpy as np
import pytest

from helpers import REPO, load_config_file, logged_messages, run_tool
from mmrepvit.utils.checks import (
    check_config,
    check_data_paths,
    check_loader_keys,
    check_neck_widths,
)
from mmrepvit.utils.config import tool_config as load_tool_config
from mmrepvit.utils.config import warn_ineffective_options

SEG_DEMO = REPO / 'configs/seg/repvit_m0_6_fpn_demo.py'
DET_DEMO = REPO / 'configs/det/repvit_m0_6_maskrcnn_demo.py'


def tool_config(config, *options):
    """A config loaded and checked as tools/train.py does before a run
    (the data paths aside)."""
    args = argparse.Namespace(
        config=str(config), launcher='none', local_rank=0, work_dir=None,
        cfg_options=dict(o.split('=', 1) for o in options) or None)
    cfg = load_tool_config(args)
    check_config(cfg, [])
    return cfg


# ----------------------------------------------------- files that are not
@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_config_that_does_not_exist(tool, monkeypatch, capsys, tmp_path):
    # a usage error (exit status 2), as from the deploy and analysis tools
    args = [tmp_path / 'nope.py'] + (['x.pth'] if tool == 'test.py' else [])
    with pytest.raises(SystemExit) as error:
        run_tool(monkeypatch, f'tools/{tool}', *args)
    assert error.value.code == 2
    assert (f"argument config: Config file '{args[0]}' does not exist "
            f"(looked for '{args[0]}')") in capsys.readouterr().err


@pytest.mark.parametrize('config,message', [
    ('mmdet::mask_rcnn/nope.py', "Config file 'mmdet::mask_rcnn/nope.py' "
     "does not exist (looked for '{}/.mim/configs/mask_rcnn/nope.py')"),
    ('nopkg::x.py', "Config 'nopkg::x.py' names the package 'nopkg'; "
     'pkg::path configs come from mmdet or mmseg'),
])
def test_package_config_that_does_not_exist(config, message, monkeypatch,
                                            capsys):
    import mmdet
    with pytest.raises(SystemExit) as error:
        run_tool(monkeypatch, 'tools/train.py', config)
    assert error.value.code == 2
    expected = message.format(os.path.dirname(mmdet.__file__))
    assert f'argument config: {expected}' in capsys.readouterr().err


def test_build_model_names_a_missing_config(tmp_path):
    from mmrepvit.apis import build_model
    with pytest.raises(FileNotFoundError, match="Config file .*nope.py' "
                       'does not exist'):
        build_model(str(tmp_path / 'nope.py'))


@pytest.mark.parametrize('config,out,message', [
    (DET_DEMO, 'results', "--out for detection must be a .pkl file, not "
     "'results'"),
    (SEG_DEMO, 'results.pkl', "--out for segmentation is the directory to "
     "write the predicted label maps (PNG) to, not a .pkl file "
     "('results.pkl')"),
])
def test_test_out_follows_the_task(monkeypatch, tmp_path, config, out,
                                   message):
    # refused before the checkpoint or the data are looked at
    with pytest.raises(ValueError, match=re.escape(message)):
        run_tool(monkeypatch, 'tools/test.py', config, tmp_path / 'x.pth',
                 '--out', out, '--work-dir', tmp_path)


def test_checkpoint_that_does_not_exist(monkeypatch, tmp_path):
    missing = tmp_path / 'missing.pth'
    # tools/test.py CONFIG CHECKPOINT
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"Cannot load the checkpoint '{missing}': the file does not "
            f'exist')):
        run_tool(monkeypatch, 'tools/test.py', SEG_DEMO, missing)
    # tools/train.py --resume PATH, and load_from
    for args in (['--resume', missing],
                 ['--cfg-options', f'load_from={missing}']):
        with pytest.raises(FileNotFoundError, match='the file does not exist'):
            run_tool(monkeypatch, 'tools/train.py', SEG_DEMO, *args)


def test_checkpoint_that_is_cut_short(monkeypatch, tmp_path):
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(b'PK\x03\x04' + bytes(100))
    for tool, args in (('tools/test.py', [cut]),
                       ('tools/train.py', ['--resume', cut])):
        with pytest.raises(ValueError, match=re.escape(
                f"'{cut}': it is not a complete checkpoint archive")):
            run_tool(monkeypatch, tool, SEG_DEMO, *args)


@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO])
def test_data_root_that_does_not_exist(config, monkeypatch, tmp_path):
    demo = 'demo_coco' if config == DET_DEMO else 'demo_ade'
    missing = tmp_path / demo   # the demo data, not written yet
    with pytest.raises(FileNotFoundError) as error:
        run_tool(monkeypatch, 'tools/train.py', config, '--cfg-options',
                 f'train_dataloader.dataset.data_root={missing}')
    message = str(error.value)
    assert f"train_dataloader.dataset: data_root '{missing}' does not " \
           f'exist' in message
    assert '--cfg-options train_dataloader.dataset.data_root=' in message
    assert ('The demo data are written by tools/demo.py or '
            f'tools/dataset_converters/make_{demo}.py.') in message


def write_det_config(path, data, train_ann='instances_train.json',
                     val_ann='instances_val.json'):
    path.write_text(f'''
_base_ = ['{DET_DEMO}']
train_dataloader = dict(dataset=dict(data_root='{data}/',
                                     ann_file='annotations/{train_ann}'))
val_dataloader = dict(dataset=dict(data_root='{data}/'))
val_evaluator = dict(ann_file='{data}/annotations/{val_ann}')
''')
    return path


def test_annotation_file_that_does_not_exist(demo_data,  # noqa: F811
                                             monkeypatch, tmp_path):
    data = demo_data / 'det'
    cfg = write_det_config(tmp_path / 'det.py', data, train_ann='typo.json',
                           val_ann='nope.json')
    with pytest.raises(FileNotFoundError) as error:
        run_tool(monkeypatch, 'tools/train.py', cfg)
    message = str(error.value)
    assert f"train_dataloader.dataset: ann_file '{data}/annotations/" \
           f"typo.json' does not exist" in message
    assert f"val_evaluator: ann_file '{data}/annotations/nope.json' does " \
           f'not exist' in message
    # two metrics of one missing file: said once
    cfg.write_text(cfg.read_text() + '\nval_evaluator = [val_evaluator, '
                   'val_evaluator]\n')
    with pytest.raises(FileNotFoundError) as error:
        run_tool(monkeypatch, 'tools/train.py', cfg)
    assert str(error.value).count('val_evaluator: ann_file') == 1


def test_image_directory_without_images(demo_data,  # noqa: F811
                                        monkeypatch, tmp_path):
    """An existing data_root whose image directory holds no file with the
    dataset's img_suffix: MMEngine would fail building the dataset with
    'need at least one array to concatenate'."""
    root = tmp_path / 'seg'
    shutil.copytree(demo_data / 'seg', root)
    for image in (root / 'images' / 'training').iterdir():
        image.rename(image.with_suffix('.png'))
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"train_dataloader.dataset: no '.jpg' file in "
            f"'{root}/images/training'")):
        run_tool(monkeypatch, 'tools/train.py', SEG_DEMO, '--cfg-options',
                 f'train_dataloader.dataset.data_root={root}',
                 f'val_dataloader.dataset.data_root={root}')


def test_data_checks_pass_on_good_data(demo_data, tmp_path):  # noqa: F811
    det = load_config_file(write_det_config(tmp_path / 'det.py',
                                            demo_data / 'det'))
    check_data_paths(det, ['train_dataloader', 'val_dataloader'])
    seg = load_config_file(SEG_DEMO)
    for loader in ('train_dataloader', 'val_dataloader'):
        seg[loader].dataset.data_root = str(demo_data / 'seg')
    check_data_paths(seg, ['train_dataloader', 'val_dataloader'])


# ------------------------------------------------------------ neck widths
def test_our_config_with_another_arch_names_the_widths():
    config = REPO / 'configs/det/repvit_m1_1_maskrcnn.py'
    tool_config(config)     # as shipped: the widths match
    with pytest.raises(ValueError) as error:
        tool_config(config, 'model.backbone.arch=m0_6')
    assert str(error.value) == (
        "model.neck.in_channels is [64, 128, 256, 512], but the RepViT "
        "backbone (arch 'm0_6', out_indices (0, 1, 2, 3), stage_ends "
        "'before_pre_block') gives features of widths [40, 80, 160, 320]. "
        "Set model.neck.in_channels=[40, 80, 160, 320], or choose the arch "
        "and out_indices that model.neck was written for.")


def test_backbone_argument_that_does_not_exist():
    # --cfg-options adds a new key silently where the config does not set
    # the real one (with_cp has a default): RepViT's TypeError named no fix
    config = REPO / 'configs/det/repvit_m1_1_maskrcnn.py'
    with pytest.raises(ValueError) as error:
        tool_config(config, 'model.backbone.with_cpp=True')
    assert str(error.value).startswith(
        'model.backbone has no argument with_cpp: RepViT takes arch, '
        'in_channels, out_indices, stage_ends, frozen_stages, norm_eval, ')
    assert str(error.value).endswith('Did you mean with_cp?')


def test_user_config_with_three_outputs(tmp_path):
    """A RetinaNet config of a user's, taking stages 1-3 of m0_6 but with
    the FPN widths of m1_1."""
    cfg = tmp_path / 'retinanet_repvit.py'
    cfg.write_text(
        "_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['mmrepvit'], "
        "allow_failed_imports=False)\n"
        "model = dict(\n"
        "    backbone=dict(_delete_=True, type='RepViT', arch='m0_6',\n"
        "                  out_indices=(1, 2, 3)),\n"
        "    neck=dict(in_channels=[128, 256, 512], start_level=0))\n")
    with pytest.raises(ValueError, match=r"out_indices \(1, 2, 3\), .* "
                       r'widths \[80, 160, 320\]\. Set model\.neck\.'
                       r'in_channels=\[80, 160, 320\]'):
        tool_config(cfg)


def test_heads_without_neck_are_checked_by_in_index():
    """MMSegmentation's UPerNet takes the backbone outputs in its heads; the
    auxiliary head reads output 2 (in_index=2)."""
    model = dict(
        backbone=dict(type='RepViT', arch='m0_6'),
        decode_head=dict(in_channels=[40, 80, 160, 320],
                         in_index=[0, 1, 2, 3]),
        auxiliary_head=dict(in_channels=256, in_index=2))
    with pytest.raises(ValueError, match=r'model\.auxiliary_head\.'
                       r'in_channels is 256, .* Set model\.auxiliary_head\.'
                       r'in_channels=160,'):
        check_neck_widths(model)
    model['auxiliary_head']['in_channels'] = 160
    check_neck_widths(model)
    model['auxiliary_head']['in_index'] = 4
    with pytest.raises(ValueError, match=r'in_index=4 selects an output'):
        check_neck_widths(model)


# ------------------------------------------------------------ cfg-options
def test_cfg_options_that_change_nothing_are_warned():
    cfg = load_config_file(SEG_DEMO)
    warnings = warn_ineffective_options(cfg, {
        'model.backbone.norm_evall': True,      # a typo of a nested key
        'max_iter': 3,                          # a typo at the top level
        'max_iters': 3,                         # a variable of the file
        'data_root': '/data',                   # a variable of the file
        # Real settings: no warning.
        'train_cfg.max_iters': 3,
        'model.backbone.drop_path_rate': 0.1,   # new, but a real argument
        'param_scheduler.0.end': 3,
        'load_from': 'x.pth',
    })
    assert warnings == [
        "--cfg-options model.backbone.norm_evall: the config has no key "
        "'model.backbone.norm_evall'; it is added as a new setting. Did you "
        "mean model.backbone.norm_eval?",
        "--cfg-options max_iter: the config has no top-level key 'max_iter' "
        "and nothing reads a new one, so this changes nothing. Did you mean "
        "max_iters?",
        "--cfg-options max_iters: 'max_iters' is a variable of the config "
        "file, read only while the file was parsed, so changing it now "
        "changes nothing. Set the settings that use it instead, e.g. "
        "train_cfg.max_iters.",
        "--cfg-options data_root: 'data_root' is a variable of the config "
        "file, read only while the file was parsed, so changing it now "
        "changes nothing. Set the settings that use it instead, e.g. "
        "train_dataloader.dataset.data_root, "
        "val_dataloader.dataset.data_root, "
        "test_dataloader.dataset.data_root.",
    ]


def test_dataloader_setting_that_does_not_exist():
    # A new key inside a dataloader reaches DataLoader(**settings): refused
    # before anything is built, naming the setting, not with its TypeError.
    cfg = tool_config(SEG_DEMO, 'test_dataloader.num_worker=1',
                      'train_dataloader.batchsize=2')
    check_loader_keys(cfg, ['val_dataloader'])   # untouched: passes
    with pytest.raises(ValueError, match=r'^test_dataloader has no setting '
                       r'num_worker: a dataloader takes dataset, sampler, '
                       r'.*Did you mean num_workers\?$'):
        check_config(cfg, ['test_dataloader'])
    with pytest.raises(ValueError, match=r'^train_dataloader has no setting '
                       r'batchsize: .*Did you mean batch_size\?$'):
        check_loader_keys(cfg, ['train_dataloader'])


@pytest.mark.parametrize('config', sorted(REPO.glob('configs/*/*.py')),
                         ids=lambda p: p.name)
def test_our_dataloaders_pass_the_key_check(config):
    cfg = load_config_file(config)
    check_loader_keys(cfg, ['train_dataloader', 'val_dataloader',
                            'test_dataloader'])


def test_tools_log_the_cfg_options_warning():
    with logged_messages() as logged:
        cfg = tool_config(SEG_DEMO, 'train_cfg.max_iter=3')
    assert cfg.train_cfg.max_iter == '3'    # merged all the same
    assert any('--cfg-options train_cfg.max_iter:' in m and
               'Did you mean train_cfg.max_iters?' in m for m in logged)


# ------------------------------------------------------------- odd images
def odd_images_dataset(demo_data, tmp_path, task):  # noqa: F811
    """A copy of the tiny demo training set whose first image is saved as
    grayscale, second as RGBA (PNG) and third as bytes that are no image."""
    root = tmp_path / task
    shutil.copytree(demo_data / task, root)
    folder = root / ('train' if task == 'det' else 'images/training')
    first, second, third = sorted(folder.iterdir())[:3]
    image = cv2.imread(str(first))
    cv2.imwrite(str(first), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(cv2.imread(str(second)), cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 128
    second.write_bytes(cv2.imencode('.png', rgba)[1].tobytes())
    third.write_bytes(b'<html>not an image</html>')
    return root, first, second, third


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_gray_and_rgba_images_load_as_three_channels(
        task, demo_data, tmp_path):  # noqa: F811
    """MMCV's LoadImageFromFile (color_type='color', as in both demo
    configs) decodes grayscale and RGBA images to 3-channel BGR; the
    training and test pipelines then run as on colour images."""
    from mmengine.registry import DATASETS
    root, gray, rgba, broken = odd_images_dataset(demo_data, tmp_path, task)
    cfg = load_config_file(DET_DEMO if task == 'det' else SEG_DEMO)
    for loader in ('train_dataloader', 'test_dataloader'):
        dataset_cfg = cfg[loader].dataset
        dataset_cfg.data_root = f'{root}/'
        if loader == 'test_dataloader':   # the training images, test pipeline
            dataset_cfg.ann_file = cfg.train_dataloader.dataset.get(
                'ann_file', '')
            dataset_cfg.data_prefix = cfg.train_dataloader.dataset.data_prefix
        dataset = DATASETS.build(dataset_cfg)
        loaded = {}
        for i in range(len(dataset)):
            path = dataset.get_data_info(i)['img_path']
            if path != str(broken):
                loaded[path] = dataset.prepare_data(i)['inputs']
        assert str(gray) in loaded and str(rgba) in loaded
        for inputs in loaded.values():
            assert inputs.shape[0] == 3
        # Gray pixels become three equal channels.
        if loader == 'test_dataloader':
            gray_input = loaded[str(gray)]
            assert np.array_equal(gray_input[0], gray_input[1])
            assert np.array_equal(gray_input[0], gray_input[2])


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_unreadable_image_is_named(task, demo_data, tmp_path):  # noqa: F811
    from mmengine.registry import DATASETS
    root, _, _, broken = odd_images_dataset(demo_data, tmp_path, task)
    cfg = load_config_file(DET_DEMO if task == 'det' else SEG_DEMO)
    cfg.train_dataloader.dataset.data_root = f'{root}/'
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    index = next(i for i in range(len(dataset))
                 if dataset.get_data_info(i)['img_path'] == str(broken))
    with pytest.raises(AssertionError, match=re.escape(
            f'failed to load image: {broken}')):
        dataset.prepare_data(index)
