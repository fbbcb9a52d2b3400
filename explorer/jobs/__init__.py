"""Background work the app starts and watches: trainer processes, lab experiments, dictionary trainings,
sweep queues, and the Train form's logic (form values -> the trainer's options and estimates)."""
