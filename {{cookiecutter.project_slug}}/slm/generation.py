"""The generation layer: user input or a data row turned into the prompt the model was trained on, and the
model's answer turned into text, by the one answer rule (prompts: a task answer is one line). infer.py,
the export search's evaluator (olive_eval) and the measurement scripts call it with explicit parameters.
"""

from slm.engines import CHAT_MAX_NEW_TOKENS, TASK_MAX_NEW_TOKENS, Generation
from slm.errors import UserError
from slm.prompts import ChatTask


class Prompter:
    """Turns user input into prompts as in training, and answers into text."""

    def __init__(self, project, generator, chat=False, max_new_tokens=None, labels=None):
        self.task, self.generator, self.chat = project.task, generator, chat
        self.system_prompt = project.system_prompt
        default = CHAT_MAX_NEW_TOKENS if chat or self.task.data_format == "messages" else TASK_MAX_NEW_TOKENS
        # by default an answer may take up to a quarter of a small model's context, so a prompt still fits
        self.max_new_tokens = max_new_tokens or min(default, generator.engine.context_length // 4)
        self.one_line = not chat and self.task.one_line_answer
        self.labels = labels
        self.history = []  # earlier chat turns, so a conversation has memory

    def prompt_for(self, text, history=()):
        tokenizer = self.generator.tokenizer
        if self.chat:
            messages = [*history, {"role": "user", "content": text}]
            # a chat project's own chat template (the config's), else the model's
            chat = self.task if isinstance(self.task, ChatTask) else ChatTask()
            return chat.prompt_for_messages(messages, tokenizer)
        return self.task.prompt_for_input(text, tokenizer, self.system_prompt)

    def tokens_over(self, prompt):
        """How far the prompt plus a full answer runs past the model's context (0: it fits)."""
        needed = len(self.generator.encode(prompt)) + self.max_new_tokens
        return max(0, needed - self.generator.engine.context_length)

    def check_fits(self, prompt):
        overflow = self.tokens_over(prompt)
        if overflow:
            raise UserError(
                f"the input is {overflow} tokens too long for the model's context of "
                f"{self.generator.engine.context_length} tokens with {self.max_new_tokens} new tokens; "
                "shorten it or lower --max-new-tokens"
            )
        return prompt

    def fitted_prompt(self, text):
        """The prompt for `text`; in a chat, the conversation so far, oldest turns dropped until the answer fits."""
        prompt = self.prompt_for(text, self.history)
        while self.history and self.tokens_over(prompt):
            del self.history[:2]  # one user turn and its answer
            prompt = self.prompt_for(text, self.history)
        return self.check_fits(prompt)

    def stream_prompt(self, prompt, result=None):
        return self.generator.stream(
            prompt, self.max_new_tokens, one_line=self.one_line, result=result, labels=self.labels
        )

    def stream(self, text):
        """Stream one answer; in a chat the exchange is remembered for the next turn."""
        result = Generation()
        yield from self.stream_prompt(self.fitted_prompt(text), result)
        if self.chat:
            self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": result.text}]

    def answer_row(self, row):
        prompt = self.check_fits(self.task.prompt_for_row(row, self.generator.tokenizer))
        result = Generation()
        for _ in self.stream_prompt(prompt, result):
            pass
        return result.text
