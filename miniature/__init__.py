"""The paper's experiment in miniature, on a CPU, offline: does a simulator edited by a specialist trained
from AI feedback predict the real world better? A tiny diffusion base, a stand-in "real world", CNN policies
trained by behaviour cloning, a D3PO specialist, a held-out scorecard and a paired evaluation - toy-sized
stand-ins for InstructPix2Pix, a robot lab and RT-1, not results about real robots.

Run it (the first run builds every piece, later runs find them built; a killed run continues):

    python scripts/eval_policies.py --preset tiny          # build, evaluate, report
    python scripts/build_miniature.py                      # build the pieces only

The pieces, in the order they are built. This package holds what only the experiment needs; the rest lives
in a lower layer because code there uses it too (the layering: README, "Layout").

0. The world, built by nothing: the CPU stand-in drawer env is the simulator (`envs/standin.py`), and its
   ``appearance="real"`` is the miniature real world (`envs/appearance.py`: a held-out piece of a style's
   texture as the cabinet, warm light, vignette, blur, sensor noise). Both stay in `envs/`: the stand-in
   renders the real world, and the evaluation's real, floor and ceiling domains are stand-in envs.
1. The policies (`policy_family.py`: `build_tiny_policies`):
   a. demonstrations from the scripted expert with DART noise, recorded in the real world
      (`demonstrations.py`);
   b. a family of behaviour-cloning runs differing in seed and augmentation, each saved at 4 checkpoints
      (`behaviour_cloning.py`) of the CNN policy (`policies/cnn.py`, which stays in `policies/`: the harness
      loads ``cnn`` policies through `evaluation/policy_loading.py`);
   c. every candidate measured in the real world on selection seeds the evaluation never uses, the family
      chosen by a rule fixed in advance (`SelectionRule`), the chosen ones' rates written as the real world's
      table (`policy_family.py`).
2. The tiny base that edits nothing: the model and its training (`sim2real_edit/tiny_base.py`) on stand-in
   frames (`envs/tiny_base.py`: `ensure_tiny_base`). Both stay below: `envs/edited.py` builds the base the
   first time a tiny-preset env needs one.
3. The specialist and its random-preference control, each for three training seeds (`experiment.py`), trained
   by the method itself with the miniature's recipe (`sim2real_edit/d3po.py: tiny_config`) and analytic judges
   (`sim2real_edit/feedback/analytic.py`).
4. The scorecard: identity, untrained, controls and specialists on a held-out validation/test split of frames
   and noise seeds (`scorecard.py`).
5. The evaluation: the family in every domain on the real world's trials and seeds, each simulated episode
   paired with its real twin (`experiment.py: Miniature.eval_config`, run by `evaluation/runner.py`; the
   colour-transfer and gain-oracle baselines are `envs/cabinet_gain.py`), and the report with its miniature
   section (`evaluation/report.py`, reading the run's ``miniature.json`` that `experiment.py` writes).
6. The real trials each simulator saves, over many random draws of the paired real sample instead of the
   run's one (`real_savings.py`; `python scripts/real_savings.py runs/eval-tiny --draws 300`).

Where the outputs go. The pieces are cached under ``<data root>/tiny`` (data root: ``$SIM2REAL_EDIT_HOME``,
else ``~/.cache/sim2real_edit``): ``base/`` (``tiny_base.json``: its PSNRs), ``policies/`` (``checkpoints/``,
``selection.json``, ``real_world.yaml``, ``timings.json``),
``specialists/<style>[-random-preferences][-seed<n>]/`` and ``miniature/scorecard.json``; another material
(``--material``) gets ``policies-<material>/`` and ``miniature/scorecard-<material>.json``. The run goes to
``runs/eval-tiny`` (``runs/eval-tiny-<material>``): ``episodes.sqlite``, ``miniature.json``, ``report.md``,
``report.json`` and ``plots/`` (with ``side_by_side.png``).

Tests: tests/test_miniature.py (the preset end to end at the tests' size), test_policy_family.py,
test_behaviour_cloning.py, test_cnn_policy.py, test_tiny_base.py, test_scorecard_split.py,
test_real_material.py, test_real_appearance.py.
"""
