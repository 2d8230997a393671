"""deimv2/utils/log.py: library messages reach the console like print, and one line silences them."""

import logging

from deimv2.utils.log import install_console_handler, remove_console_handler


def test_messages_show_like_print_and_one_line_silences_them(capsys):
    log = logging.getLogger("deimv2.engine.trainer")
    log.info("训练开始")
    log.warning("提示：小心")
    got = capsys.readouterr()
    assert got.out == "训练开始\n" and got.err == "提示：小心\n"  # the bare message, no level or time prefix
    logging.getLogger("deimv2").setLevel(logging.WARNING)
    try:
        log.info("看不见")
        log.warning("仍然看得见")
        got = capsys.readouterr()
        assert got.out == "" and got.err == "仍然看得见\n"
    finally:
        logging.getLogger("deimv2").setLevel(logging.INFO)


def test_handler_installed_once_and_removable(capsys, caplog):
    install_console_handler()
    install_console_handler()
    root = logging.getLogger("deimv2")
    assert sum(type(h).__name__ == "ConsoleHandler" for h in root.handlers) == 1 and not root.propagate
    remove_console_handler()
    try:
        with caplog.at_level(logging.INFO, logger="deimv2"):
            logging.getLogger("deimv2.tutorial.demo").info("交给应用自己的日志")
        assert "交给应用自己的日志" in caplog.text and capsys.readouterr().out == ""  # propagates instead
    finally:
        install_console_handler()
