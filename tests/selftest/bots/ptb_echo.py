"""A tiny, unmodified-style python-telegram-bot bot: knows nothing of the fake (the launcher points it)."""
import logging
import os

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

logging.basicConfig(level=logging.INFO)
logging.getLogger("httpx").setLevel(logging.WARNING)   # httpx logs URLs, which carry the token


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Ping", callback_data="ping"),
                                      InlineKeyboardButton("Site", url="https://example.org")]])
    await update.message.reply_text(f"Hello {update.effective_user.first_name}", reply_markup=keyboard)


async def ping(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.callback_query.answer("pong!")
    await update.callback_query.edit_message_text("Pong")


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text("echo: " + update.message.text)


async def post_init(app: Application) -> None:
    await app.bot.set_my_commands([("start", "Start")])


def main() -> None:
    app = Application.builder().token(os.environ["TELEGRAM_BOT_TOKEN"]).post_init(post_init).build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(ping))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    app.run_polling()


if __name__ == "__main__":
    main()
