import pytest

from pada.data.groups import (
    AGE_GROUPS,
    DESCRIPTIONS,
    description,
    group_by_word,
    group_of_age,
    parse_description,
)


def test_fourteen_descriptions_match_the_paper():
    assert len(DESCRIPTIONS) == 14 and len(set(DESCRIPTIONS)) == 14
    assert description(0, "female") == "a toddler girl's face"
    assert description(0, "male") == "a toddler boy's face"
    assert description(5, "male") == "man's face in his sixties"
    assert description(6, "female") == "woman's face in her eighties"
    for text in DESCRIPTIONS:
        g, s = parse_description(text)
        assert description(g, s) == text
    assert parse_description("an elderly man") is None


@pytest.mark.parametrize("age,name", [(0, "0-5"), (5.49, "0-5"), (5.5, "6-15"), (15, "6-15"), (16, "16-25"),
                                      (25.49, "16-25"), (25.5, "26-35"), (35, "26-35"), (36, "36-50"),
                                      (50, "36-50"), (51, "51-70"), (70, "51-70"), (70.5, "70+"),
                                      (99, "70+")])
def test_nearest_anchor_rule_gives_the_paper_intervals(age, name):
    g = group_of_age(age)
    assert g.name == name
    assert g.contains(age)
    assert sum(other.contains(age) for other in AGE_GROUPS) == 1


def test_group_by_word():
    assert group_by_word("sixties").name == "51-70"
    assert group_by_word("26-35").word == "thirties"
    with pytest.raises(ValueError):
        group_by_word("fifties")
