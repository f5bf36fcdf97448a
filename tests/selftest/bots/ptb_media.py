"""A python-telegram-bot bot using what bot-auto-order uses beyond text: a sticker on /start, a photo
invoice uploaded as multipart with an HTML caption, a pop-up callback answer, editMessageCaption,
deleteMessage, and a job-like notice to other users that tells 403 (Forbidden) from 400 (BadRequest)."""
import io
import logging
import os

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

logging.basicConfig(level=logging.INFO)
logging.getLogger("httpx").setLevel(logging.WARNING)   # httpx logs URLs, which carry the token

STICKER = "CAACAgIAAxkBAAIDbWkLZHuqPRCqCqmL9flozT9YJdWOAAIZUAAC4KOCB7lIn3OKexieNgQ"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_sticker(STICKER)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("❌ Batalkan", callback_data="expire"),
                                      InlineKeyboardButton("🗑 Hapus", callback_data="delete")]])
    photo = io.BytesIO(PNG)
    photo.name = "qris.png"
    await update.message.reply_photo(photo, caption="<b>Invoice</b> tg1-abc &amp; co", parse_mode=ParseMode.HTML,
                                     reply_markup=keyboard)


async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    if query.data == "expire":
        await query.answer("⛔️ Stop spamming!", show_alert=True)
        await query.edit_message_caption("<i>Kedaluwarsa</i>", parse_mode=ParseMode.HTML)
    else:
        await query.message.delete()         # not answered: a bot may leave a callback unanswered


async def notify(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    outcomes = []
    for chat_id in context.args:
        try:
            await context.bot.send_message(int(chat_id), "❌ <b>Pesanan Dibatalkan</b>", parse_mode=ParseMode.HTML)
            outcomes.append(f"{chat_id}:ok")
        except Forbidden:
            outcomes.append(f"{chat_id}:forbidden")
        except BadRequest as err:
            outcomes.append(f"{chat_id}:bad request {err.message}")
    await update.message.reply_text(" ".join(outcomes))


def main() -> None:
    app = Application.builder().token(os.environ["TELEGRAM_BOT_TOKEN"]).build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("notify", notify))
    app.add_handler(CallbackQueryHandler(pressed))
    app.run_polling()


if __name__ == "__main__":
    main()
