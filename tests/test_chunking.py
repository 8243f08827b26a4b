import torch

from sim2real_edit.chunking import map_in_chunks


def test_map_in_chunks_splits_only_when_needed():
    batch = torch.arange(10.0)
    calls = []

    def double(chunk: torch.Tensor) -> torch.Tensor:
        calls.append(len(chunk))
        return chunk * 2

    torch.testing.assert_close(map_in_chunks(double, batch, chunk_size=4), batch * 2)
    assert calls == [4, 4, 2]
    calls.clear()
    map_in_chunks(double, batch, chunk_size=None)
    assert calls == [10]


def test_map_in_chunks_concatenates_each_output_of_a_tuple():
    first, second = torch.arange(7.0), torch.arange(7.0) * 10
    sums, differences = map_in_chunks(lambda a, b: (a + b, b - a), first, second, chunk_size=3)
    torch.testing.assert_close(sums, first + second)
    torch.testing.assert_close(differences, second - first)
