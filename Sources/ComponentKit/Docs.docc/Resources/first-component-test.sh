swift test
# …
# ✔ Test greetsTheSenderAndCounts() passed after 0.005 seconds.
# ✔ Test neverAnswersAnError() passed after 0.005 seconds.
# ✔ Test answersTheCountQuery() passed after 0.006 seconds.
# ✔ Test advertisesItsQueryAndRefusesOthers() passed after 0.006 seconds.
# ✔ Suite "Greeter" passed after 0.006 seconds.
# ✔ Test run with 4 tests in 1 suite passed after 0.006 seconds.
