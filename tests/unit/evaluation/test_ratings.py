from labpipe.evaluation.ratings import ERROR_TEXT, format_structured, parse_rating


def test_double_brackets_then_single_brackets():
    assert parse_rating("Good answer. Rating: [[7]]") == 7
    assert parse_rating("Rating: [8]") == 8
    assert parse_rating("Scores [3] and then [[9]]") == 9  # [[x]] wins wherever it is


def test_decimals_are_kept():
    rating = parse_rating("Rating: [[8.5]]")
    assert rating == 8.5 and isinstance(rating, float)


def test_no_rating_and_error():
    assert parse_rating("The answer is fine.") == -1
    assert parse_rating("Rating: [[seven]]") == -1
    assert parse_rating(ERROR_TEXT) == -1
    assert parse_rating("") == -1


def test_several_ratings_take_the_first():
    assert parse_rating("Rating: [[4]] ... corrected: Rating: [[6]]") == 4


def test_structured_verdict_round_trips_through_the_reference_parser():
    text = format_structured("  Clear and correct. ", 9)
    assert text == "Clear and correct.\n\nRating: [[9]]" and parse_rating(text) == 9
