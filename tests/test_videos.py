"""Episode videos (`evaluation.videos`): one decodable MP4 per stored episode with its reset frame and one frame
per step, written before the episode's row, and a killed run that resumes without duplicate or lost videos."""

from __future__ import annotations

import json
from dataclasses import astuple, replace
from pathlib import Path

import numpy as np
import pytest

from evaluation import ExecutionOptions, ResultStore, graded_stand_ins, run_evaluation, tiny_config
from evaluation.config import cnn_policies
from evaluation.runner import load_process_policies, make_domain_env, pending_episodes, run_batch
from evaluation.videos import INDEX_NAME, VIDEOS_DIR, VideoRecorder, read_video_index, safe_name, video_path
from policies.cnn import CNNPolicy, CNNPolicyConfig

av = pytest.importorskip("av")

SYNC = ExecutionOptions(num_envs=4, vectorization_mode="sync", progress=False, videos=True)


@pytest.fixture(scope="module", autouse=True)
def isolated_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path_factory.getbasetemp() / "videos-home"))
        yield


@pytest.fixture(scope="module")
def random_cnn(tmp_path_factory) -> Path:
    """A random-weight CNN policy: it sees the frames, so each domain's frames reach a policy."""
    folder = tmp_path_factory.mktemp("cnn") / "cnn-random"
    CNNPolicy.initialise(CNNPolicyConfig(seed=3), name="cnn-random").save_pretrained(folder)
    return folder


def video_config(cnn: Path, **overrides):
    """A scripted expert and a random CNN x 2 trials x 1 seed in the plain sim, the colour transfer (an edited
    domain: two panels) and the miniature real world, at most 30 steps: 12 episodes."""
    values = {
        "policies": graded_stand_ins(["scripted-expert"]) + cnn_policies([cnn]),
        "trials": ("OpenTopDrawer/b1", "CloseMiddleDrawer/a1"),
        "seeds": 1,
        "domains": ("unedited", "colour-transfer", "real"),
        "max_episode_steps": 30,
        "standin_camera": (80, 64),
    }
    return tiny_config(**{**values, **overrides})


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]


def index_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / VIDEOS_DIR / INDEX_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def video_run(tmp_path_factory, random_cnn):
    run_dir = tmp_path_factory.mktemp("video-run")
    run_evaluation(video_config(random_cnn), run_dir, SYNC)
    return run_dir


def test_every_episode_has_an_mp4_with_its_reset_frame_and_one_frame_per_step(video_run):
    episodes = ResultStore.open(video_run).episodes()
    lines = index_lines(video_run)
    assert len(episodes) == 12 and len(lines) == 12
    records = {record.key: record for record in read_video_index(video_run)}
    assert set(records) == {episode.key for episode in episodes}
    assert any(e.success for e in episodes) and any(not e.success for e in episodes)
    for episode in episodes:
        record = records[episode.key]
        assert record.path == video_path(episode.key)
        file = video_run / record.path
        assert file.stat().st_size == record.bytes > 0
        data = file.read_bytes()
        assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while it loads
        frames = decode(file)
        assert len(frames) == record.frames == episode.steps + 1  # the reset frame and one per step
        assert frames[0].shape == (record.height, record.width, 3)
        assert record.width % 2 == 0 and record.height % 2 == 0
        edited = episode.domain == "colour-transfer"
        assert len(record.panels) == (2 if edited else 1)
        assert record.panels[-1].startswith("sim") == (edited or episode.domain == "unedited")
        # The arm moves: the last frame is not the first.
        assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 1.0
        if edited:  # the policy's recoloured frame on the left, the unedited render on the right
            half = record.width // 2
            scene = slice(20, 180)  # below the labels, above the caption band
            left, right = frames[0][scene, :half].astype(int), frames[0][scene, half:2 * half].astype(int)
            assert np.abs(left - right).mean() > 3.0
    assert not list((video_run / VIDEOS_DIR).rglob("*.partial"))


def test_videos_off_writes_no_video(random_cnn, tmp_path):
    config = video_config(random_cnn, domains=("unedited",), trials=("OpenTopDrawer/b1",),
                          policies=graded_stand_ins(["scripted-expert"]))
    run_evaluation(config, tmp_path, replace(SYNC, videos=False))
    assert len(ResultStore.open(tmp_path).episodes()) == 1
    assert not (tmp_path / VIDEOS_DIR).exists()


class SimulatedKill(Exception):
    pass


def test_a_killed_run_resumes_without_duplicate_or_lost_videos(video_run, random_cnn, tmp_path):
    config = video_config(random_cnn)
    stored: list = []

    def kill_after_five(episode):
        stored.append(episode.key)
        if len(stored) == 5:
            raise SimulatedKill

    with pytest.raises(SimulatedKill):  # in the middle of a batch: its unfinished videos are discarded
        run_evaluation(config, tmp_path, replace(SYNC, num_envs=3), on_episode=kill_after_five)
    assert {tuple(record.key) for record in read_video_index(tmp_path)} == set(stored)
    assert len(index_lines(tmp_path)) == 5
    assert not list((tmp_path / VIDEOS_DIR).rglob("*.partial"))

    # A kill between a video's rename and its row's commit: the batch's first episode is encoded, indexed and
    # never stored.
    store = ResultStore.open(tmp_path)
    (domain, style, urdf_version), pending = next(
        (group, episodes) for group, episodes in pending_episodes(config, store.done_keys()).items() if episodes)
    env = make_domain_env(config, SYNC, domain, style, urdf_version, 3)
    try:
        policies = load_process_policies(config, SYNC, {pending[0].policy.name})
        batch = [episode for episode in pending if episode.policy.name == pending[0].policy.name][:3]
        results = run_batch(env, policies[pending[0].policy.name], batch, config, VideoRecorder(tmp_path))
        unstored = next(results)
        results.close()
    finally:
        env.close()
    assert unstored.key not in ResultStore.open(tmp_path).done_keys()
    assert len(index_lines(tmp_path)) == 6 and (tmp_path / video_path(unstored.key)).is_file()

    summary = run_evaluation(config, tmp_path, replace(SYNC, num_envs=8))
    assert (summary.episodes_already_done, summary.episodes_run) == (5, 7)
    episodes = ResultStore.open(tmp_path).episodes()
    lines = index_lines(tmp_path)
    # One index line per stored episode: none twice (the unstored episode's line was dropped, then rerun).
    assert sorted(tuple(line[k] for k in ("policy", "domain", "style", "urdf_version", "seed", "task", "pose"))
                  for line in lines) == sorted(episode.key for episode in episodes)
    assert len(lines) == 12
    reference = {astuple(replace(e, wall_s=0.0)) for e in ResultStore.open(video_run).episodes()}
    assert {astuple(replace(e, wall_s=0.0)) for e in episodes} == reference
    for episode in episodes:  # the same frames as the uninterrupted run's
        path = video_path(episode.key)
        ours, theirs = decode(tmp_path / path), decode(video_run / path)
        assert len(ours) == len(theirs) == episode.steps + 1
        # The encoder is not bit-reproducible: the same frames (checked by hash) of the miniature real world, whose
        # sensor noise costs many bits, decode to pixels up to ~45 levels apart from one run to the next; the
        # smooth simulator frames stay within 2. So only those are compared pixel for pixel here.
        if episode.domain != "real":
            assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(ours, theirs)) <= 2
    assert not list((tmp_path / VIDEOS_DIR).rglob("*.partial"))


def test_video_paths_stay_in_their_folder_and_never_collide():
    key = ("a b/../c", "edited+crop", "wood", "", 2, "OpenTopDrawer", "a0")
    path = video_path(key)
    assert path.startswith("videos/") and ".." not in path.split("/") and " " not in path
    assert path.endswith("/OpenTopDrawer_a0_default_seed2.mp4")
    assert len(Path(path).parts) == 4
    assert safe_name("a b") != safe_name("a_b") and safe_name("a_b") == "a_b"
    assert safe_name("..") not in ("", ".", "..")


def test_ray_refuses_videos_with_the_fix(random_cnn, tmp_path):
    from evaluation.distributed import RayEvaluation

    with pytest.raises(ValueError, match="not supported on Ray.*--no-videos"):
        RayEvaluation(video_config(random_cnn), tmp_path, SYNC)


def test_videos_are_on_by_default_for_small_runs_only(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "eval_policies", Path(__file__).resolve().parents[1] / "scripts" / "eval_policies.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    small = tiny_config(trials=("OpenTopDrawer/b1",), seeds=1, domains=("unedited",))
    assert small.expected_episodes() <= script.VIDEO_DEFAULT_EPISODES and script.default_videos(small, True)
    assert not script.default_videos(small, False)  # on Ray the workers run the episodes
    large = tiny_config(seeds=script.VIDEO_DEFAULT_EPISODES)
    assert not script.default_videos(large, True)
    assert "--videos records them" in capsys.readouterr().out
