"""The framework's floor: a functions-framework HTTP function that only answers 200."""

import functions_framework


@functions_framework.http
def webhook(request):
    return "ok"
