# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import argparse
import copy
import json
import re
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from helpers import REPO, STRIDES, head_tensors, randomize, to_timm_by_hand
from mmrepvit import RepViT, official_to_timm, timm_to_official


@pytest.fixture(scope='module')
def source():
    """A randomised m0_6 whose weights every checkpoint below carries."""
    return randomize(RepViT('m0_6'), seed=7).eval()


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def pretrained(path, **kwargs):
    return RepViT('m0_6', init_cfg=dict(type='Pretrained',
                                        checkpoint=str(path),
                                        **kwargs))


def test_official_imagenet_checkpoint(tmp_path, source):
    # Official layout: {'model': state dict} with distilled classifier heads.
    state = OrderedDict(source.state_dict())
    state.update(head_tensors(320, distilled=True))
    torch.save({'model': state}, tmp_path / 'official.pth')
    model = pretrained(tmp_path / 'official.pth')
    model.init_weights()
    assert_same_weights(model, source)
    report = RepViT('m0_6').load_pretrained(str(tmp_path / 'official.pth'))
    assert len(report.dropped_head) == 14 and not report.missing
    assert not report.unexpected and report.layout == 'official'


def test_timm_layout_checkpoint(tmp_path, source):
    state = OrderedDict(source.state_dict())
    state.update(head_tensors(320, distilled=True))
    timm_state = to_timm_by_hand(state, [int(c) for c in STRIDES['m0_6']])
    assert 'stem.conv1.c.weight' in timm_state
    assert ('stages.1.downsample.pre_block.token_mixer.conv.c.weight'
            in timm_state)
    assert 'stages.1.downsample.ffn.conv1.bn.running_var' in timm_state
    assert 'head.head_dist.l.weight' in timm_state
    torch.save(timm_state, tmp_path / 'timm.pth')
    model = pretrained(tmp_path / 'timm.pth')
    model.init_weights()
    assert_same_weights(model, source)
    # The converter and the hand-written layout agree in both directions.
    assert list(official_to_timm(state)) == list(timm_state)
    back = timm_to_official(timm_state)
    assert list(back) == list(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize('arch', ['m1_1', 'm2_3'])
def test_timm_layout_matches_timms_block_placement(arch):
    # timm's layout: for m1_1, stages.0.blocks.{0,1} are features 1-2 and
    # stages.1.downsample.pre_block is features 3.
    state = RepViT(arch).state_dict()
    timm_state = official_to_timm(state)
    assert timm_state.keys() == to_timm_by_hand(
        state, [int(c) for c in STRIDES[arch]]).keys()
    if arch == 'm1_1':
        conv = 'token_mixer.conv.c.weight'
        assert torch.equal(timm_state['stages.0.blocks.1.' + conv],
                           state['features.2.token_mixer.0.conv.c.weight'])
        assert torch.equal(
            timm_state['stages.1.downsample.pre_block.' + conv],
            state['features.3.token_mixer.0.conv.c.weight'])


def test_whole_model_checkpoint_with_prefix(tmp_path, source):
    # An MMEngine checkpoint of a detector: backbone under 'backbone.', plus
    # a neck, meta and a message hub (HistoryBuffer, numpy values).
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('test_prefix_ckpt')
    hub.update_scalar('train/loss', 1.5)
    state = OrderedDict(('backbone.' + k, v)
                        for k, v in source.state_dict().items())
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(4, 40, 1, 1)
    torch.save({'meta': {'epoch': 3, 'dataset_meta': {'classes': ('a', )}},
                'state_dict': state, 'message_hub': hub.state_dict()},
               tmp_path / 'det.pth')
    model = pretrained(tmp_path / 'det.pth', prefix='backbone.')
    model.init_weights()
    assert_same_weights(model, source)
    # Without the prefix nothing matches, and the error says what to do.
    with pytest.raises(ValueError, match="prefix='backbone.'"):
        pretrained(tmp_path / 'det.pth').init_weights()
    with pytest.raises(KeyError, match="no key starts with prefix 'bone.'"):
        pretrained(tmp_path / 'det.pth', prefix='bone.').init_weights()


def test_plain_state_dict_and_ddp_prefix(tmp_path, source):
    torch.save(source.state_dict(), tmp_path / 'plain.pth')
    model = pretrained(tmp_path / 'plain.pth')
    model.init_weights()
    assert_same_weights(model, source)
    torch.save({'state_dict': {'module.' + k: v
                               for k, v in source.state_dict().items()}},
               tmp_path / 'ddp.pth')
    model = pretrained(tmp_path / 'ddp.pth')
    model.init_weights()
    assert_same_weights(model, source)


def test_fused_checkpoint_into_deploy_backbone(tmp_path, source):
    fused = randomize(RepViT('m0_6'), seed=7).eval().switch_to_deploy()
    torch.save(fused.state_dict(), tmp_path / 'fused.pth')
    model = RepViT('m0_6', deploy=True, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'fused.pth')))
    model.init_weights()
    assert_same_weights(model, fused)
    # A fused file cannot initialise the training form.
    with pytest.raises(ValueError, match='deploy=True'):
        pretrained(tmp_path / 'fused.pth').init_weights()


def test_unfused_checkpoint_into_deploy_backbone(tmp_path, source):
    torch.save({'model': source.state_dict()}, tmp_path / 'official.pth')
    model = RepViT('m0_6', deploy=True, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'official.pth'))).eval()
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(source(x), model(x)):
            assert ((a - b).abs().max() / a.abs().max()) < 1e-4


def test_unfused_weights_into_deploy_backbone_of_a_three_stage_arch():
    # The training-form twin that fuses them must not ask for a 4th stage.
    arch = dict(widths=(16, 32, 64), depths=(2, 2, 1))
    source = randomize(RepViT(arch, out_indices=(0, 1, 2)), seed=3).eval()
    model = RepViT(arch, out_indices=(0, 1, 2), deploy=True).eval()
    model.load_state_dict(source.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(source(x), model(x)):
            assert a.shape == b.shape
            assert ((a - b).abs().max() / a.abs().max()) < 1e-4


def write_safetensors(state, path):
    """The safetensors format written out from its description (an 8-byte
    little-endian header length, a JSON header of dtype, shape and byte
    offsets, padded with spaces to 8 bytes, then the raw data), without the
    safetensors package."""
    header, blobs, offset = {'__metadata__': {'format': 'pt'}}, [], 0
    names = {torch.float32: 'F32', torch.int64: 'I64'}
    for k, v in state.items():
        data = v.contiguous().numpy().tobytes()
        header[k] = dict(dtype=names[v.dtype], shape=list(v.shape),
                         data_offsets=[offset, offset + len(data)])
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b' ' * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, 'little') + text + b''.join(blobs))


def test_timm_safetensors_file(tmp_path, source):
    """timm's weights on the Hugging Face Hub come as model.safetensors:
    read from the file's header and data (no code in the format)."""
    state = OrderedDict(source.state_dict())
    state.update(head_tensors(320, distilled=True))
    path = tmp_path / 'model.safetensors'
    write_safetensors(to_timm_by_hand(state, [int(c) for c in
                                              STRIDES['m0_6']]), path)
    model = pretrained(path)
    model.init_weights()
    assert_same_weights(model, source)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 100])     # cut short
    with pytest.raises(ValueError, match="model.safetensors' is not a valid "
                       'PyTorch checkpoint .a broken safetensors file: '
                       '.*file not fully covered.*Download it again'):
        pretrained(path).init_weights()


def test_pretrained_in_an_init_cfg_list(tmp_path, source):
    """Beside other init_cfg entries the checkpoint goes last (MMEngine's
    order): what it lacks keeps the other entries' initialisation."""
    state = source.state_dict()
    missing = 'features.17.channel_mixer.m.2.c.weight'
    del state[missing]
    torch.save({'model': state}, tmp_path / 'partial.pth')
    model = RepViT('m0_6', init_cfg=[
        dict(type='Constant', layer='Conv2d', val=0.25, bias=0),
        dict(type='Pretrained', checkpoint=str(tmp_path / 'partial.pth'))])
    model.init_weights()
    loaded = model.state_dict()
    assert torch.all(loaded[missing] == 0.25)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    twice = RepViT('m0_6', init_cfg=[
        dict(type='Pretrained', checkpoint=str(tmp_path / 'partial.pth'))] * 2)
    with pytest.raises(ValueError, match='has 2 Pretrained entries'):
        twice.init_weights()


def test_other_arch_raises(tmp_path):
    torch.save({'model': RepViT('m0_9').state_dict()}, tmp_path / 'm0_9.pth')
    with pytest.raises(ValueError,
                       match=r"does not fit RepViT arch 'm0_6'.*another arch"):
        pretrained(tmp_path / 'm0_9.pth').init_weights()
    # a deploy-form backbone names its own arch too (it loads through a
    # training-form copy)
    with pytest.raises(ValueError, match=r"does not fit RepViT arch 'm0_6'"):
        RepViT('m0_6', deploy=True).load_pretrained(
            str(tmp_path / 'm0_9.pth'))


def test_checkpoint_for_other_input_channels(tmp_path, source):
    torch.save({'model': source.state_dict()}, tmp_path / 'rgb.pth')
    with pytest.raises(ValueError, match=r'was trained on 3-channel images '
                       r'and this backbone takes in_channels=4: only the '
                       r'first convolution \(features.0.0.c.weight, '
                       r'\(20, 3, 3, 3\) vs \(20, 4, 3, 3\)\) differs'):
        RepViT('m0_6', in_channels=4).load_pretrained(
            str(tmp_path / 'rgb.pth'))


def test_unrelated_checkpoint_raises(tmp_path):
    torch.save({'conv.weight': torch.zeros(1)}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='No tensor of checkpoint'):
        pretrained(tmp_path / 'other.pth').init_weights()


def test_missing_keys_are_logged(tmp_path, source):
    from mmengine.logging import MMLogger
    state = source.state_dict()
    del state['features.17.channel_mixer.m.2.bn.weight']
    torch.save(state, tmp_path / 'partial.pth')
    logger = MMLogger.get_instance('test_missing_keys')
    messages = []
    logger.addFilter(lambda record: messages.append(record.getMessage()))
    report = RepViT('m0_6').load_pretrained(str(tmp_path / 'partial.pth'),
                                            logger=logger)
    assert report.missing == ['features.17.channel_mixer.m.2.bn.weight']
    assert any('Missing keys' in m and
               'features.17.channel_mixer.m.2.bn.weight' in m
               for m in messages)
    n = len(RepViT('m0_6').state_dict())
    assert any(m.startswith(f'Loaded {n - 1}/{n} tensors') for m in messages)


def test_missing_file_and_bad_location(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'does not exist .*check '
                       r'the path \(the checkpoint argument of a tool, or '
                       r'init_cfg.checkpoint, load_from or --resume'):
        pretrained('/nonexistent/repvit.pth').init_weights()
    # a work dir given for the checkpoint in it: it exists, and is no file
    with pytest.raises(IsADirectoryError, match=r'is a directory; give a '
                       r'checkpoint file in it'):
        pretrained(tmp_path).init_weights()
    with pytest.raises(ValueError, match='Unsupported checkpoint location'):
        pretrained('s3://bucket/repvit.pth').init_weights()
    with pytest.raises(ValueError, match=r"Unknown keys \['strict'\]"):
        pretrained('/nonexistent/repvit.pth', strict=True).init_weights()


def test_untrusted_pickle_is_refused(tmp_path, source):
    # An argparse.Namespace needs a full unpickler: refused, never executed.
    torch.save({'model': source.state_dict(), 'args': argparse.Namespace(a=1)},
               tmp_path / 'unsafe.pth')
    with pytest.raises(RuntimeError, match='Refusing to load.*weights_only'):
        pretrained(tmp_path / 'unsafe.pth').init_weights()
    # A whole pickled model: the advice names .state_dict().
    torch.save(source, tmp_path / 'module.pth')
    with pytest.raises(RuntimeError, match=r'Refusing to load.*for a whole '
                       r'pickled model, torch.save\(torch.load\(path, '
                       r"weights_only=False\).state_dict\(\), "
                       r"'weights.pth'\)"):
        pretrained(tmp_path / 'module.pth').init_weights()


class _CallsSystem:

    def __reduce__(self):
        import os
        return (os.system, ('echo pwned',))


class _ReadsMethod:

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, 'update'))


@pytest.mark.parametrize('payload,why', [(_CallsSystem, 'system'),
                                         (_ReadsMethod, 'HistoryBuffer')])
def test_code_in_a_checkpoint_is_never_run(tmp_path, payload, why):
    # mmrepvit allows the data types of MMEngine checkpoints, and getattr only
    # for HistoryBuffer's statistics; anything else is refused by name.
    torch.save({'state_dict': {}, 'x': payload()}, tmp_path / 'evil.pth')
    with pytest.raises(RuntimeError, match=f'Refusing to load.*{why}'):
        pretrained(tmp_path / 'evil.pth').init_weights()


def test_convert_tool_round_trip(tmp_path, source):
    state = OrderedDict(source.state_dict())
    state.update(head_tensors(320))
    torch.save({'model': state}, tmp_path / 'official.pth')
    tool = str(REPO / 'tools' / 'model_converters' /
               'convert_checkpoint.py')
    subprocess.run([sys.executable, tool, str(tmp_path / 'official.pth'),
                    str(tmp_path / 'timm.pth'), '--to', 'timm'], check=True)
    timm_state = torch.load(tmp_path / 'timm.pth', weights_only=True)
    assert list(timm_state) == list(
        to_timm_by_hand(state, [int(c) for c in STRIDES['m0_6']]))
    subprocess.run([sys.executable, tool, str(tmp_path / 'timm.pth'),
                    str(tmp_path / 'back.pth'), '--to', 'official'],
                   check=True)
    back = torch.load(tmp_path / 'back.pth', weights_only=True)['model']
    assert list(back) == list(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def convert(monkeypatch, *args):
    """tools/model_converters/convert_checkpoint.py ARGS, in this process."""
    import runpy
    monkeypatch.setattr(sys, 'argv', ['convert_checkpoint.py',
                                      *map(str, args)])
    tool = REPO / 'tools' / 'model_converters' / 'convert_checkpoint.py'
    runpy.run_path(str(tool), run_name='__main__')


@pytest.mark.parametrize('contents,why', [
    ({'foo': torch.zeros(1)}, r"holds no RepViT backbone tensors \(keys "
     r"\['foo'\]\); expected official \(features.N...\) or timm"),
    ({}, 'holds no tensors'),
    # a stray key beside the backbone's has no place in either layout
    ({'features.0.0.c.weight': torch.zeros(1), 'foo': torch.zeros(1)},
     r"holds tensors that are no part of a RepViT in the official layout "
     r"\(features., classifier.\), e.g. \['foo'\]"),
])
@pytest.mark.parametrize('to', ['official', 'timm'])
def test_convert_tool_refuses_what_is_no_repvit(tmp_path, monkeypatch, capsys,
                                                contents, why, to):
    torch.save(contents, tmp_path / 'other.pth')
    with pytest.raises(SystemExit) as e:
        convert(monkeypatch, tmp_path / 'other.pth', tmp_path / 'out.pth',
                '--to', to)
    assert e.value.code == 2
    assert re.search(why, capsys.readouterr().err)
    assert not (tmp_path / 'out.pth').exists()


def test_convert_tool_keeps_its_input(tmp_path, monkeypatch, capsys,
                                      source):
    """Writing over SRC (the same path, or a link to it) or into a folder
    is refused before anything is read; SRC is unchanged."""
    src = tmp_path / 'src.pth'
    torch.save(source.state_dict(), src)
    before = src.read_bytes()
    (tmp_path / 'link.pth').symlink_to(src)
    for dst, why in [(src, f"'{src}' is the input '{src}'"),
                     (tmp_path / 'link.pth', 'is the input'),
                     (tmp_path, f"'{tmp_path}' is a directory")]:
        with pytest.raises(SystemExit) as e:
            convert(monkeypatch, src, dst, '--to', 'timm')
        assert e.value.code == 2
        assert why in capsys.readouterr().err
    assert src.read_bytes() == before


def test_convert_tool_whole_model_with_prefix(tmp_path, monkeypatch, capsys,
                                              source):
    whole = tmp_path / 'seg.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': {
        **{f'backbone.{k}': v for k, v in source.state_dict().items()},
        'neck.conv.weight': torch.zeros(1),
        'decode_head.conv.weight': torch.zeros(1)}}, whole)
    # Without the prefix it is refused, naming the prefix to pass.
    for to in ['official', 'timm']:
        with pytest.raises(SystemExit) as e:
            convert(monkeypatch, whole, tmp_path / 'out.pth', '--to', to)
        assert e.value.code == 2
        assert ("seg.pth holds a whole model (keys under ['backbone.', "
                "'decode_head.', 'neck.']) with its RepViT backbone under "
                "'backbone.': pass --prefix backbone. to convert the "
                'backbone alone.' in capsys.readouterr().err)
    assert not (tmp_path / 'out.pth').exists()
    # With it, the backbone alone is written, as from a backbone file.
    convert(monkeypatch, whole, tmp_path / 'timm.pth', '--to', 'timm',
            '--prefix', 'backbone.')
    assert "prefix 'backbone.'" in capsys.readouterr().out
    written = torch.load(tmp_path / 'timm.pth', weights_only=True)
    expected = official_to_timm(source.state_dict())
    assert list(written) == list(expected)
    assert all(torch.equal(written[k], expected[k]) for k in expected)
    # A prefix that is not there is named.
    with pytest.raises(SystemExit) as e:
        convert(monkeypatch, whole, tmp_path / 'out.pth', '--to', 'timm',
                '--prefix', 'model.')
    assert e.value.code == 2
    assert "no key starts with prefix 'model.'" in capsys.readouterr().err


def test_unfused_partial_checkpoint_into_deploy_reports_missing(tmp_path,
                                                                source):
    state = source.state_dict()
    del state['features.3.token_mixer.2.bn.weight']
    torch.save(state, tmp_path / 'partial.pth')
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('test_partial_into_deploy')
    messages = []
    logger.addFilter(lambda record: messages.append(record.getMessage()))
    report = RepViT('m0_6', deploy=True).load_pretrained(
        str(tmp_path / 'partial.pth'), logger=logger)
    assert report.missing == ['features.3.token_mixer.2.bn.weight']
    # Counted against the unfused backbone the file was written for.
    n = len(RepViT('m0_6').state_dict())
    assert any(m.startswith(f'Loaded {n - 1}/{n} tensors of RepViT-m0_6 '
                            f'(deploy)') for m in messages)


def test_the_form_is_told_without_the_stem(tmp_path, source):
    # The stem's first convolution is the one users drop or adapt (other
    # input channels); the form must still be told from the other tensors,
    # or training-form weights meet the deploy form and none loads.
    fused = copy.deepcopy(source).switch_to_deploy().state_dict()
    state = source.state_dict()
    for s in (state, fused):
        for k in [k for k in s if k.startswith('features.0.0.')]:
            del s[k]
    torch.save(state, tmp_path / 'no_stem.pth')
    torch.save(fused, tmp_path / 'fused_no_stem.pth')
    deploy = RepViT('m0_6', deploy=True)
    report = deploy.load_pretrained(str(tmp_path / 'no_stem.pth'))
    assert report.missing == ['features.0.0.c.weight', 'features.0.0.bn.'
                              'weight', 'features.0.0.bn.bias',
                              'features.0.0.bn.running_mean',
                              'features.0.0.bn.running_var',
                              'features.0.0.bn.num_batches_tracked']
    loaded = deploy.state_dict()
    for k, v in fused.items():   # fused on the way in: exactly as fusing
        assert torch.equal(loaded[k], v), k
    # Fused weights without the stem still switch a training-form backbone
    # as they load (a whole model's load_state_dict).
    training = RepViT('m0_6')
    training.load_state_dict(fused, strict=False)
    assert training.deploy
    loaded = training.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in fused.items())


def _truncated(path, source, size=None):
    torch.save({'model': source.state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[:size or len(data) // 2])


@pytest.mark.parametrize('write,why', [
    # A download cut short: the zip archive lacks its directory.
    (_truncated, 'failed finding central directory'),
    # Cut within its first kilobytes: torch raised a bare OSError (Errno
    # 22) that named no file; the validator says what is wrong.
    (lambda p, s: _truncated(p, s, 5000),
     r'it is not a complete checkpoint archive \(cut short'),
    # An HTML error page saved under the checkpoint's name.
    (lambda p, s: p.write_text('<!DOCTYPE html><html>Not Found</html>'),
     r"starts with b'<!'"),
    (lambda p, s: p.write_bytes(b''), r"starts with b''"),
    # A file that starts like a pickle but is not one (as PyTorch >= 2.4's
    # weights-only unpickler says it, and the restricted one of older ones).
    (lambda p, s: p.write_bytes(b'\x80\x05garbage'),
     '(Unsupported operand|pickle data was truncated)'),
])
def test_broken_file_names_the_file_and_says_to_download_again(
        tmp_path, source, write, why):
    path = tmp_path / 'repvit_m0_6_distill_300e.pth'
    write(path, source)
    with pytest.raises(ValueError, match=f"{path.name}' is not a valid "
                       f'PyTorch checkpoint .*{why}.*Download it again'):
        pretrained(path).init_weights()


def test_unreachable_url_names_it_and_suggests_a_local_path(
        tmp_path, monkeypatch):
    # A port nothing listens on: the connection is refused at once.
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    url = f'http://127.0.0.1:{port}/repvit_m0_6_distill_300e.pth'
    with pytest.raises(ConnectionError,
                       match=f'Could not download the checkpoint {url}.*by '
                       r'hand.*/path/to/repvit_m0_6_distill_300e\.pth'):
        pretrained(url).init_weights()


def test_url_is_downloaded_by_rank_0_first(served, monkeypatch, source):
    """In a distributed job a Pretrained URL is read as MMEngine reads its
    own downloads: rank 0 downloads it while the other ranks wait at a
    barrier, then they read it (from the cache on the same machine)."""
    import torch.distributed
    from mmengine.runner import checkpoint as mmengine_checkpoint
    root, url = served
    torch.save({'model': source.state_dict()}, root / 'm0_6.pth')
    events = []
    read = mmengine_checkpoint.load_url   # mmrepvit's safe reader
    monkeypatch.setattr(mmengine_checkpoint, 'load_url', lambda *args, **kw:
                        events.append('read') or read(*args, **kw))
    monkeypatch.setattr(torch.distributed, 'barrier',
                        lambda *args, **kw: events.append('barrier'))
    monkeypatch.setattr(mmengine_checkpoint, 'get_dist_info', lambda: (1, 2))
    model = pretrained(f'{url}/m0_6.pth')
    model.init_weights()
    assert events == ['barrier', 'read']
    for k, v in model.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k
    events.clear()
    monkeypatch.setattr(mmengine_checkpoint, 'get_dist_info', lambda: (0, 2))
    pretrained(f'{url}/m0_6.pth').init_weights()
    assert events == ['read', 'barrier']


def test_checkpoint_without_backbone_tensors(tmp_path):
    # A detector checkpoint whose keys are all neck / head ones.
    torch.save({'state_dict': {'neck.conv.weight': torch.zeros(1),
                               'rpn_head.conv.weight': torch.zeros(1)}},
               tmp_path / 'heads_only.pth')
    with pytest.raises(ValueError, match='No tensor of .*heads_only.pth.* '
                       "matches the RepViT backbone.*prefix='backbone.'"):
        pretrained(tmp_path / 'heads_only.pth').init_weights()
